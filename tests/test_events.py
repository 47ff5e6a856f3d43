"""The task event log on a real SQLite file: append, replay, refusals, concurrency."""

from __future__ import annotations

import random
import sqlite3
import threading
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from indexer.events import (
    EVENTS_SCHEMA,
    MAX_TEXT,
    Event,
    EventLog,
    UnknownTask,
    fold,
    forget_all,
    recent_files,
)


def open_db(path: Path) -> sqlite3.Connection:
    """A WAL-mode connection with the event schema, as the store will hand one over."""
    conn = sqlite3.connect(path, timeout=10)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.executescript(EVENTS_SCHEMA)
    return conn


class Clock:
    """A deterministic clock: each call is one second later."""

    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        self.now += 1.0
        return self.now


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "index.sqlite"


@pytest.fixture
def log(db_path: Path) -> EventLog:
    return EventLog(open_db(db_path), clock=Clock())


def test_replay_of_a_task_story(log: EventLog, db_path: Path) -> None:
    log.append("T1", "task_started", {"title": "Fix parser", "description": "crash on empty", "query": "parse"})
    log.append("T1", "module_started", {"path": "pkg/parser.py"})
    log.append("T1", "file_opened", {"path": "pkg/parser.py"})
    log.append("T1", "file_opened", {"path": "pkg/lexer.py"})
    log.append("T1", "file_opened", {"path": "pkg/parser.py"})
    log.append("T1", "module_started", {"path": "pkg/lexer.py"})
    log.append("T1", "file_edited", {"path": "pkg/lexer.py", "lines": [3, 9]})
    trace = (
        "Traceback (most recent call last):\n"
        '  File "pkg/lexer.py", line 4, in lex\n    x = 1 / 0\n'
        "ZeroDivisionError: division by zero\n"
    )
    err = log.append("T1", "error", {"traceback": trace})
    log.append("T1", "test_result", {"test": "tests/test_lexer.py::test_empty", "passed": False, "output": "boom"})
    log.append("T1", "iteration", {"summary": "guard empty input", "outcome": "failure"})
    log.append("T1", "module_complete", {"path": "pkg/lexer.py"})
    log.append("T1", "test_result", {"test": "tests/test_parser.py::test_ok", "passed": True})
    log.append("T1", "task_status", {"status": "blocked", "note": "waiting on review"})
    log.append("T1", "note", {"text": "lexer returns None on empty"})
    log.append("T2", "task_started", {"title": "Other"})

    reopened = EventLog(sqlite3.connect(db_path))  # replay from disk, through a fresh connection
    state = reopened.state("T1")
    assert (state.title, state.description, state.query) == ("Fix parser", "crash on empty", "parse")
    assert (state.status, state.status_note) == ("blocked", "waiting on review")
    assert state.current_module == "pkg/parser.py"  # lexer was completed, parser still open
    assert state.modules_completed == ("pkg/lexer.py",)
    assert state.files_opened == ("pkg/lexer.py", "pkg/parser.py")
    assert state.files_edited == ("pkg/lexer.py",)
    assert state.last_error is not None
    assert state.last_error.message == "ZeroDivisionError: division by zero"
    assert [(r.path, r.line, r.function) for r in state.last_error.refs] == [("pkg/lexer.py", 4, "lex")]
    assert state.last_error.seq == err.seq
    assert not state.error_resolved  # another test passed; the one that failed still fails
    assert state.tests == {"tests/test_lexer.py::test_empty": False, "tests/test_parser.py::test_ok": True}
    assert state.failing_tests == ("tests/test_lexer.py::test_empty",)
    assert [(i.n, i.summary, i.outcome) for i in state.iterations] == [(1, "guard empty input", "failure")]
    assert state.notes == ("lexer returns None on empty",)
    assert (state.seq, state.events) == (14, 14)
    assert (state.started_at, state.updated_at) == (1_001.0, 1_014.0)
    assert state.to_json()["last_error"]["refs"] == [{"path": "pkg/lexer.py", "line": 4, "function": "lex"}]
    assert reopened.tasks() == ["T2", "T1"]
    assert reopened.last_seq() == 15
    assert [e.seq for e in reopened.events(after=3, upto=6)] == [4, 5, 6]
    assert [e.seq for e in reopened.events("T2")] == [15]


def test_error_stays_unresolved_until_a_success(log: EventLog) -> None:
    log.append("T", "test_result", {"test": "t", "passed": True})
    log.append("T", "error", {"message": "KeyError: 'x'"})
    assert not log.state("T").error_resolved  # a pass before the error does not resolve it
    log.append("T", "iteration", {"summary": "retry", "outcome": "partial"})
    assert not log.state("T").error_resolved
    log.append("T", "iteration", {"n": 7, "summary": "fixed", "outcome": "success"})
    assert log.state("T").error_resolved
    log.append("T", "error", {"message": "again"})
    state = log.state("T")
    assert not state.error_resolved and state.last_error.message == "again"
    assert [i.n for i in state.iterations] == [1, 7]


# --------------------------------------------------------------------------- #
# state(at) == fold(prefix), for random event sequences
# --------------------------------------------------------------------------- #

_PATHS = st.sampled_from(["a.py", "pkg/b.py", "pkg/c.py", "tests/test_a.py"])
_FRAME = st.tuples(_PATHS, st.integers(1, 50), st.sampled_from(["f", "g", "<module>"]))
_TRACEBACK = st.lists(_FRAME, min_size=1, max_size=3).map(
    lambda frames: "Traceback (most recent call last):\n"
    + "".join(f'  File "{p}", line {n}, in {f}\n    pass\n' for p, n, f in frames)
    + "ValueError: bad\n"
)
_TEXT = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=1, max_size=12).filter(str.strip)
_LINES = st.tuples(st.integers(1, 5), st.integers(5, 9)).map(list)
_STATUS = st.sampled_from(["active", "blocked", "done", "failed"])
_OUTCOME = st.sampled_from(["success", "failure", "partial"])


def _event(kind: str | list[str], required: dict, optional: dict | None = None) -> st.SearchStrategy:
    """(type, data) pairs of one or several event types."""
    kinds = st.sampled_from(kind) if isinstance(kind, list) else st.just(kind)
    return st.tuples(kinds, st.fixed_dictionaries(required, optional=optional or {}))


_EVENT = st.one_of(
    _event("task_started", {"title": _TEXT}, {"description": st.text(max_size=8), "query": st.text(max_size=8)}),
    _event("task_status", {"status": _STATUS}, {"note": st.text(max_size=8)}),
    _event(["module_started", "module_complete", "file_opened"], {"path": _PATHS}),
    _event("file_edited", {"path": _PATHS}, {"lines": _LINES}),
    _event("test_result", {"test": st.sampled_from(["t1", "t2", "t3"]), "passed": st.booleans()}),
    _event("error", {"message": _TEXT}, {"traceback": _TRACEBACK}),
    _event("iteration", {"summary": _TEXT}, {"n": st.integers(1, 9), "outcome": _OUTCOME}),
    _event("note", {"text": _TEXT}),
)
_SEQUENCE = st.lists(st.tuples(st.sampled_from(["T1", "T2", "T3"]), _EVENT), min_size=1, max_size=25)


def _unique_recent_last(paths: list[str]) -> tuple[str, ...]:
    """Independent oracle: each path once, ordered by its last occurrence."""
    return tuple(reversed(list(dict.fromkeys(reversed(paths)))))


@settings(max_examples=60, deadline=None)
@given(sequence=_SEQUENCE)
def test_state_at_every_seq_is_the_fold_of_that_prefix(sequence, tmp_path_factory) -> None:
    log = EventLog(open_db(tmp_path_factory.mktemp("events") / "index.sqlite"), clock=Clock())
    appended = [log.append(task, kind, data) for task, (kind, data) in sequence]
    assert [e.seq for e in appended] == list(range(1, len(appended) + 1))
    for at in range(1, len(appended) + 1):
        prefix = appended[:at]
        for task in ("T1", "T2", "T3"):
            mine = [e for e in prefix if e.task_id == task]
            if not mine:
                with pytest.raises(UnknownTask, match=f"no events for task '{task}' up to seq {at}"):
                    log.state(task, at=at)
                continue
            state = log.state(task, at=at)
            assert state == fold(mine)
            changes = [e for e in mine if e.type in ("task_started", "task_status")]
            assert state.status == (changes[-1].data.get("status", "active") if changes else "active")
            assert state.files_opened == _unique_recent_last([e.data["path"] for e in mine if e.type == "file_opened"])
            assert state.tests == {e.data["test"]: e.data["passed"] for e in mine if e.type == "test_result"}
            assert state.seq == mine[-1].seq
    assert log.events() == appended  # what append returned is what the log replays


def test_fold_is_deterministic_and_order_free(log: EventLog) -> None:
    log.append("T", "task_started", {"title": "x"})
    log.append("T", "file_opened", {"path": "a.py"})
    log.append("T", "file_opened", {"path": "b.py"})
    log.append("T", "test_result", {"test": "t", "passed": False})
    events = log.events("T")
    shuffled = events[:]
    random.Random(4).shuffle(shuffled)
    assert fold(shuffled) == fold(events) == log.state("T")
    with pytest.raises(ValueError, match="several tasks"):
        fold(events + [Event(99, 0.0, "U", "note", {"text": "x"})])
    with pytest.raises(ValueError, match="at least one event"):
        fold([])


# --------------------------------------------------------------------------- #
# Append-only, reset
# --------------------------------------------------------------------------- #

def test_triggers_refuse_update_and_delete(log: EventLog, db_path: Path) -> None:
    log.append("T", "note", {"text": "keep me"})
    other = sqlite3.connect(db_path)
    with pytest.raises(sqlite3.DatabaseError, match="events are append-only"):
        other.execute("UPDATE events SET payload = '{}'")
    with pytest.raises(sqlite3.DatabaseError, match="events are append-only"):
        other.execute("DELETE FROM events")
    other.rollback()
    assert log.events()[0].data == {"text": "keep me"}


def test_forget_all_wipes_and_keeps_the_guard(log: EventLog, db_path: Path) -> None:
    conn = sqlite3.connect(db_path)
    log.append("T", "note", {"text": "one"})
    log.append("T", "note", {"text": "two"})
    forget_all(conn)
    assert log.events() == [] and log.tasks() == [] and log.last_seq() == 0
    assert log.append("T", "note", {"text": "fresh"}).seq == 1  # numbering starts over
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        conn.execute("DELETE FROM events")
    conn.rollback()
    conn.execute("INSERT INTO events(time, task_id, type, payload) VALUES (0, 'T', 'note', '{}')")
    with pytest.raises(RuntimeError, match="open transaction"):
        forget_all(conn)


# --------------------------------------------------------------------------- #
# Clear errors
# --------------------------------------------------------------------------- #

def test_unknown_task_names_the_known_ones(log: EventLog) -> None:
    with pytest.raises(UnknownTask, match="no events for task 'T9'; .*the log is empty"):
        log.state("T9")
    log.append("T1", "note", {"text": "x"})
    log.append("T1", "note", {"text": "y"})
    with pytest.raises(KeyError):
        log.state("T9")
    with pytest.raises(UnknownTask, match=r"no events for task 'T9'.*known tasks: T1"):
        log.state("T9")
    with pytest.raises(UnknownTask, match="up to seq 0"):
        log.state("T1", at=0)
    assert log.state("T1", at=1).notes == ("x",)


@pytest.mark.parametrize(
    ("kind", "data", "message"),
    [
        ("file_opend", {"path": "a"}, r"unknown event type 'file_opend'; valid types: task_started, .*note"),
        ("file_opened", None, r"^event 'file_opened' needs data.path \(a non-empty string\)$"),
        ("file_opened", {"path": 3}, r"^event 'file_opened' needs data.path to be a non-empty string, got number 3$"),
        ("file_opened", {"file": "a"}, r"unknown data key 'file'; allowed keys: path"),
        ("file_opened", ["a"], r"needs data as a JSON object, got array"),
        ("task_status", {"status": "finished"}, r"data.status='finished'; valid values: active, blocked, done, failed"),
        ("test_result", {"test": "t", "passed": "yes"}, r"data.passed to be true or false, got string"),
        ("file_edited", {"path": "a", "lines": [9, 2]}, r"data.lines to be \[start, end\]"),
        ("iteration", {"summary": "s", "n": True}, r"data.n to be an integer >= 1, got boolean"),
        ("iteration", {"summary": "s", "n": -4}, r"data.n to be an integer >= 1, got number -4"),
        ("error", {"message": "   "}, r"needs data.message or data.traceback"),
        ("iteration", {"summary": "s", "outcome": "ok"}, r"valid values: success, failure, partial"),
        ("error", {"message": ""}, r"needs data.message or data.traceback"),
        ("task_started", {"title": "  "}, r"needs data.title to be a non-empty string"),
    ],
)
def test_bad_payloads_are_refused_in_one_line(log: EventLog, kind: str, data: object, message: str) -> None:
    with pytest.raises(ValueError, match=message) as info:
        log.append("T", kind, data)  # type: ignore[arg-type]
    assert "\n" not in str(info.value)
    assert log.last_seq() == 0


def test_an_error_is_resolved_when_the_failing_tests_pass_and_iterations_number_on(log: EventLog) -> None:
    log.append("T", "task_started", {"title": "t"})
    log.append("T", "test_result", {"test": "tests/test_a.py::test_x", "passed": False})
    log.append("T", "error", {"message": "ValueError: x"})
    log.append("T", "test_result", {"test": "tests/test_b.py::test_y", "passed": True})
    assert not log.state("T").error_resolved  # a test that never failed says nothing about the error
    log.append("T", "test_result", {"test": "tests/test_a.py::test_x", "passed": True})
    assert log.state("T").error_resolved and log.state("T").failing_tests == ()
    log.append("T", "iteration", {"n": 2, "summary": "second"})
    log.append("T", "iteration", {"summary": "third"})
    assert [i.n for i in log.state("T").iterations] == [2, 3]  # not len + 1 = 2 again


def test_a_test_id_names_its_file_as_file_events_do(db_path: Path, tmp_path: Path) -> None:
    log = EventLog(open_db(db_path), root=tmp_path)
    log.append("T", "test_result", {"test": f"{tmp_path}/tests/test_a.py::test_x", "passed": False})
    log.append("T", "test_result", {"test": "./tests/test_b.py::test_y[1]", "passed": False})
    log.append("T", "test_result", {"test": "not a path", "passed": True})
    assert log.state("T").tests == {"tests/test_a.py::test_x": False, "tests/test_b.py::test_y[1]": False,
                                     "not a path": True}


@pytest.mark.parametrize("task_id", ["", "   ", "x" * 201, 7, "T\n1", "T\t1"])
def test_bad_task_ids_are_refused(log: EventLog, task_id: object) -> None:
    with pytest.raises(ValueError, match="task_id must be a non-empty string of at most 200 printable chars"):
        log.append(task_id, "note", {"text": "x"})  # type: ignore[arg-type]


def test_append_refuses_to_join_an_open_transaction(log: EventLog, db_path: Path) -> None:
    conn = sqlite3.connect(db_path)
    conn.execute("INSERT INTO events(time, task_id, type, payload) VALUES (0, 'T', 'note', '{\"text\": \"x\"}')")
    with pytest.raises(RuntimeError, match="inside an open transaction; commit first"):
        EventLog(conn).append("T", "note", {"text": "y"})


def test_long_strings_are_capped_with_a_marker(log: EventLog) -> None:
    frames = "".join(f'  File "m{i}.py", line {i}, in f{i}\n    pass\n' for i in range(1, 800))
    traceback = "Traceback (most recent call last):\n" + frames + "RuntimeError: deep\n"
    assert len(traceback) > MAX_TEXT
    error = log.append("T", "error", {"traceback": traceback})
    stored = error.data["traceback"]
    assert len(stored) <= MAX_TEXT and stored.startswith("[... ") and stored.endswith("RuntimeError: deep\n")
    assert len(error.data["refs"]) == 799  # refs come from the whole traceback, before the cut
    assert error.data["message"] == "RuntimeError: deep"
    note = log.append("T", "note", {"text": "n" * (MAX_TEXT + 5)})
    assert len(note.data["text"]) <= MAX_TEXT and note.data["text"].endswith("chars truncated ...]")
    assert log.events()[-1].data == note.data


def test_root_makes_paths_workspace_relative(db_path: Path, tmp_path: Path) -> None:
    root = tmp_path / "ws"
    log = EventLog(open_db(db_path), root=root)
    opened = log.append("T", "file_opened", {"path": str(root / "pkg" / "a.py")})
    outside = log.append("T", "file_opened", {"path": "/elsewhere/b.py"})
    trace = (
        "Traceback (most recent call last):\n"
        f'  File "{root}/pkg/a.py", line 3, in run\n'
        '  File "/usr/lib/python3.11/json/__init__.py", line 346, in loads\n'
        f'  File "{root}/.venv/lib/python3.11/site-packages/lib.py", line 9, in g\n'
        "ValueError: x\n"
    )
    error = log.append("T", "error", {"traceback": trace})
    assert opened.data["path"] == "pkg/a.py"
    assert outside.data["path"] == "/elsewhere/b.py"  # kept as given: not ours to judge
    assert error.data["refs"] == [{"path": "pkg/a.py", "line": 3, "function": "run"}]


def test_recent_files_is_the_sequence_of_touched_files(log: EventLog) -> None:
    log.append("T", "module_started", {"path": "a.py"})
    log.append("T", "file_opened", {"path": "a.py"})
    log.append("T", "note", {"text": "n"})
    log.append("T", "file_opened", {"path": "b.py"})
    log.append("T", "error", {"traceback": 'File "c.py", line 1, in f\nFile "d.py", line 2, in g\nE: x'})
    log.append("T", "file_edited", {"path": "d.py"})
    log.append("T", "file_opened", {"path": "a.py"})
    events = log.events("T")
    assert recent_files(events, 10) == ["a.py", "b.py", "c.py", "d.py", "a.py"]
    assert recent_files(events, 2) == ["d.py", "a.py"]
    assert recent_files(events, 0) == []
    with pytest.raises(ValueError, match="limit >= 0"):
        recent_files(events, -1)


# --------------------------------------------------------------------------- #
# Concurrency
# --------------------------------------------------------------------------- #

def test_two_connections_interleaved_get_increasing_seqs(db_path: Path) -> None:
    first = EventLog(open_db(db_path))
    second = EventLog(open_db(db_path))
    seqs = [(first if i % 2 else second).append(f"T{i % 2}", "note", {"text": str(i)}).seq for i in range(20)]
    assert seqs == sorted(seqs) and len(set(seqs)) == 20
    assert [e.data["text"] for e in first.events()] == [str(i) for i in range(20)]


def test_threads_appending_at_once_lose_nothing(db_path: Path) -> None:
    open_db(db_path).close()
    results: dict[int, list[int]] = {}

    def writer(k: int) -> None:
        log = EventLog(sqlite3.connect(db_path, timeout=10))
        results[k] = [log.append(f"W{k}", "note", {"text": f"{k}-{i}"}).seq for i in range(25)]

    threads = [threading.Thread(target=writer, args=(k,)) for k in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for seqs in results.values():
        assert seqs == sorted(seqs)
    assert sorted(results[0] + results[1]) == list(range(1, 51))


def test_the_readme_lists_every_event_type_with_its_data_keys():
    """The README's event table is what users read; it must say what ``validate`` accepts."""
    import re
    from pathlib import Path

    from indexer.events import EVENT_TYPES

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    documented: dict[str, tuple[set[str], set[str]]] = {}
    for types, data in re.findall(r"^\| (`[a-z_]+`(?:, `[a-z_]+`)*) \| (.+) \|$", readme, re.M):
        keys = set(re.findall(r"`([a-z_]+)`", re.sub(r"\([^)]*\)", "", data)))
        required = set(re.findall(r"\*\*`([a-z_]+)`\*\*", data))
        for name in re.findall(r"`([a-z_]+)`", types):
            documented[name] = (keys, required)
    expected = {name: ({f.name for f in fields}, {f.name for f in fields if f.required})
                for name, fields in EVENT_TYPES.items()}
    assert documented == expected
