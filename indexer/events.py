"""The task event log: what an agent did, appended once, replayed into task state.

Events are never changed in place (SQLite triggers refuse UPDATE and DELETE),
so the state of a task at any past moment is the fold of its events up to that
``seq``. ``fold`` is pure; ``EventLog`` is the only part that touches the database.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from indexer.tracebacks import TraceRef, error_message, parse_traceback, relativize, workspace_path

_SCHEMA_STATEMENTS: tuple[str, ...] = (
    """CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    time REAL NOT NULL,
    task_id TEXT NOT NULL,
    type TEXT NOT NULL,
    payload TEXT NOT NULL  -- JSON object
)""",
    "CREATE INDEX IF NOT EXISTS events_task_seq ON events(task_id, seq)",
    """CREATE TRIGGER IF NOT EXISTS events_no_update BEFORE UPDATE ON events
BEGIN SELECT RAISE(ABORT, 'events are append-only'); END""",
    """CREATE TRIGGER IF NOT EXISTS events_no_delete BEFORE DELETE ON events
BEGIN SELECT RAISE(ABORT, 'events are append-only'); END""",
)
#: DDL of the event log, for the store's migrations (``conn.executescript(EVENTS_SCHEMA)``).
EVENTS_SCHEMA: str = ";\n".join(_SCHEMA_STATEMENTS) + ";\n"

MAX_TASK_ID = 200
#: SQLite's largest integer: sequence numbers past it cannot be compared with the stored ones.
_MAX_SEQ = 2**63 - 1
#: Longest stored string in a payload; test output and tracebacks keep their end, the rest their start.
MAX_TEXT = 20_000
_KEEP_TAIL = frozenset({"output", "traceback"})
_TRUNCATED = "[... {n} chars truncated ...]"

STATUSES: tuple[str, ...] = ("active", "blocked", "done", "failed")
OUTCOMES: tuple[str, ...] = ("success", "failure", "partial")
_DEFAULT_STATUS = "active"


@dataclass(frozen=True, slots=True)
class _Field:
    """One payload key an event type accepts."""

    name: str
    kind: str  # "text" (non-empty str), "str", "bool", "int", "lines"
    required: bool = False
    choices: tuple[str, ...] = ()


#: Each event type and the payload keys it accepts.
EVENT_TYPES: dict[str, tuple[_Field, ...]] = {
    "task_started": (_Field("title", "text", True), _Field("description", "str"), _Field("query", "str")),
    "task_status": (_Field("status", "text", True, STATUSES), _Field("note", "str")),
    "module_started": (_Field("path", "text", True),),
    "module_complete": (_Field("path", "text", True),),
    "file_opened": (_Field("path", "text", True),),
    "file_edited": (_Field("path", "text", True), _Field("lines", "lines")),
    "test_result": (_Field("test", "text", True), _Field("passed", "bool", True), _Field("output", "str")),
    "error": (_Field("message", "str"), _Field("traceback", "str")),
    "iteration": (_Field("n", "int"), _Field("summary", "text", True), _Field("outcome", "str", False, OUTCOMES)),
    "note": (_Field("text", "text", True),),
}
_KIND_WORDS = {
    "text": "a non-empty string",
    "str": "a string",
    "bool": "true or false",
    "int": "an integer >= 1",
    "lines": "[start, end] line numbers with 1 <= start <= end",
}


class UnknownTask(KeyError):
    """No events recorded for a task (or none up to the requested seq)."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "unknown task"


@dataclass(frozen=True, slots=True)
class Event:
    """One recorded event; ``data`` is the validated payload as stored."""

    seq: int
    time: float
    task_id: str
    type: str
    data: dict[str, Any]


# --------------------------------------------------------------------------- #
# Validation
# --------------------------------------------------------------------------- #

def validate(event_type: str, data: dict[str, Any] | None) -> dict[str, Any]:
    """A copy of the payload checked against its event type; ValueError says what is wrong."""
    if event_type not in EVENT_TYPES:
        raise ValueError(f"unknown event type {event_type!r}; valid types: {', '.join(EVENT_TYPES)}")
    data = {} if data is None else data
    if not isinstance(data, dict):
        raise ValueError(f"event {event_type!r} needs data as a JSON object, got {_json_type(data)}")
    fields = EVENT_TYPES[event_type]
    allowed = {f.name for f in fields}
    unknown = sorted(k for k in data if k not in allowed)
    if unknown:
        raise ValueError(
            f"event {event_type!r} got unknown data key {unknown[0]!r}; allowed keys: {', '.join(sorted(allowed))}"
        )
    out: dict[str, Any] = {}
    for f in fields:
        value = data.get(f.name)
        if value is None:
            if f.required:
                raise ValueError(f"event {event_type!r} needs data.{f.name} ({_KIND_WORDS[f.kind]})")
            continue
        if not _has_kind(value, f.kind):
            raise ValueError(
                f"event {event_type!r} needs data.{f.name} to be {_KIND_WORDS[f.kind]}, "
                f"got {_json_type(value)} {value!r:.60}"
            )
        if f.choices and value not in f.choices:
            raise ValueError(f"event {event_type!r} got data.{f.name}={value!r}; valid values: {', '.join(f.choices)}")
        out[f.name] = list(value) if f.kind == "lines" else value
    if event_type == "error" and not out.get("message", "").strip() and not out.get("traceback", "").strip():
        raise ValueError("event 'error' needs data.message or data.traceback (a non-empty string)")
    return out


def _has_kind(value: Any, kind: str) -> bool:
    """Whether a payload value has the JSON type a field asks for (bools are not integers)."""
    if kind == "text":
        return isinstance(value, str) and bool(value.strip())
    if kind == "str":
        return isinstance(value, str)
    if kind == "bool":
        return isinstance(value, bool)
    if kind == "int":  # the only integer field is an iteration's number
        return isinstance(value, int) and not isinstance(value, bool) and value >= 1
    return (
        isinstance(value, (list, tuple))
        and len(value) == 2
        and all(isinstance(v, int) and not isinstance(v, bool) for v in value)
        and 1 <= value[0] <= value[1]
    )


def _json_type(value: Any) -> str:
    """The JSON name of a Python value's type, for error messages."""
    names = {bool: "boolean", int: "number", float: "number", str: "string", list: "array", dict: "object"}
    return "null" if value is None else names.get(type(value), type(value).__name__)


def _capped(data: dict[str, Any]) -> dict[str, Any]:
    """The payload with every string cut to ``MAX_TEXT`` chars."""
    return {k: _cap(v, keep_tail=k in _KEEP_TAIL) if isinstance(v, str) else v for k, v in data.items()}


def _cap(text: str, keep_tail: bool) -> str:
    """Text cut to ``MAX_TEXT`` chars with a marker saying how much was dropped."""
    if len(text) <= MAX_TEXT:
        return text
    marker = _TRUNCATED.format(n=len(text) - MAX_TEXT)
    keep = MAX_TEXT - len(marker) - 1
    if keep_tail:
        return f"{marker}\n{text[-keep:]}"
    return f"{text[:keep]}\n{marker}"


# --------------------------------------------------------------------------- #
# Fold: events -> task state (pure)
# --------------------------------------------------------------------------- #

@dataclass(frozen=True, slots=True)
class LastError:
    """The most recent error of a task and where its traceback points."""

    message: str
    refs: tuple[TraceRef, ...]
    seq: int
    traceback: str = ""

    def to_json(self) -> dict:
        """The error as the state's JSON shows it."""
        return {
            "message": self.message,
            "refs": [r.to_json() for r in self.refs],
            "seq": self.seq,
            "traceback": self.traceback,
        }


@dataclass(frozen=True, slots=True)
class Iteration:
    """One attempt the agent reported; ``n`` counts from 1 when the agent gave none."""

    n: int
    summary: str
    outcome: str | None
    seq: int

    def to_json(self) -> dict:
        """The iteration as the state's JSON shows it."""
        return {"n": self.n, "summary": self.summary, "outcome": self.outcome, "seq": self.seq}


@dataclass(frozen=True, slots=True)
class TaskState:
    """A task as its events left it at ``seq``; path tuples are unique, most recent last."""

    task_id: str
    title: str
    description: str
    query: str
    status: str
    status_note: str
    current_module: str | None
    modules_completed: tuple[str, ...]
    files_opened: tuple[str, ...]
    files_edited: tuple[str, ...]
    last_error: LastError | None
    error_resolved: bool
    tests: dict[str, bool]  # latest result per test, in order of first report
    failing_tests: tuple[str, ...]
    iterations: tuple[Iteration, ...]
    notes: tuple[str, ...]
    seq: int
    started_at: float
    updated_at: float
    events: int = 0  # how many events were folded

    def to_json(self) -> dict:
        """The whole state as plain JSON types."""
        return {
            "task_id": self.task_id,
            "title": self.title,
            "description": self.description,
            "query": self.query,
            "status": self.status,
            "status_note": self.status_note,
            "current_module": self.current_module,
            "modules_completed": list(self.modules_completed),
            "files_opened": list(self.files_opened),
            "files_edited": list(self.files_edited),
            "last_error": None if self.last_error is None else self.last_error.to_json(),
            "error_resolved": self.error_resolved,
            "tests": dict(self.tests),
            "failing_tests": list(self.failing_tests),
            "iterations": [i.to_json() for i in self.iterations],
            "notes": list(self.notes),
            "seq": self.seq,
            "started_at": self.started_at,
            "updated_at": self.updated_at,
            "events": self.events,
        }


def _touch(paths: list[str], path: str) -> None:
    """Move ``path`` to the end of an ordered unique list."""
    if path in paths:
        paths.remove(path)
    paths.append(path)


def fold(events: Iterable[Event]) -> TaskState:
    """The state one task's events add up to, replayed in seq order; no I/O."""
    ordered = sorted(events, key=lambda e: e.seq)
    if not ordered:
        raise ValueError("fold needs at least one event; a task exists from its first event")
    task_ids = sorted({e.task_id for e in ordered})
    if len(task_ids) > 1:
        raise ValueError(f"fold got events of several tasks ({', '.join(task_ids)}); fold one task at a time")
    title = description = query = status_note = ""
    status = _DEFAULT_STATUS
    open_modules: list[str] = []
    completed: list[str] = []
    opened: list[str] = []
    edited: list[str] = []
    last_error: LastError | None = None
    error_resolved = False
    tests: dict[str, bool] = {}
    iterations: list[Iteration] = []
    notes: list[str] = []
    for e in ordered:
        d = e.data
        if e.type == "task_started":
            title = d["title"]
            description = d.get("description", description)
            query = d.get("query", query)
            status, status_note = _DEFAULT_STATUS, ""
        elif e.type == "task_status":
            status, status_note = d["status"], d.get("note", "")
        elif e.type == "module_started":
            _touch(open_modules, d["path"])
            if d["path"] in completed:
                completed.remove(d["path"])
        elif e.type == "module_complete":
            if d["path"] in open_modules:
                open_modules.remove(d["path"])
            _touch(completed, d["path"])
        elif e.type == "file_opened":
            _touch(opened, d["path"])
        elif e.type == "file_edited":
            _touch(edited, d["path"])
        elif e.type == "test_result":
            was_failing = tests.get(d["test"]) is False
            tests[d["test"]] = d["passed"]
            # A test that failed passes, and none fails any more: the fix is confirmed. (Another test passing
            # says nothing about the error.)
            error_resolved = error_resolved or (last_error is not None and d["passed"] and was_failing
                                                and all(tests.values()))
        elif e.type == "error":
            refs = tuple(TraceRef(**r) for r in d.get("refs", ()))
            last_error = LastError(d.get("message", ""), refs, e.seq, d.get("traceback", ""))
            error_resolved = False
        elif e.type == "iteration":
            outcome = d.get("outcome")
            n = d.get("n", max((i.n for i in iterations), default=0) + 1)  # numbered on from the highest
            iterations.append(Iteration(n, d["summary"], outcome, e.seq))
            error_resolved = error_resolved or (last_error is not None and outcome == "success")
        elif e.type == "note":
            notes.append(d["text"])
    return TaskState(
        task_id=task_ids[0],
        title=title,
        description=description,
        query=query,
        status=status,
        status_note=status_note,
        current_module=open_modules[-1] if open_modules else None,
        modules_completed=tuple(completed),
        files_opened=tuple(opened),
        files_edited=tuple(edited),
        last_error=last_error,
        error_resolved=error_resolved,
        tests=tests,
        failing_tests=tuple(name for name, passed in tests.items() if not passed),
        iterations=tuple(iterations),
        notes=tuple(notes),
        seq=ordered[-1].seq,
        started_at=ordered[0].time,
        updated_at=ordered[-1].time,
        events=len(ordered),
    )


def recent_files(events: Iterable[Event], limit: int) -> list[str]:
    """The last ``limit`` files the events touched, in seq order, repeats in a row collapsed.

    Files come from opens, edits, module starts/completions and error frames
    (outermost frame first, so the failing line is the most recent).
    """
    if limit < 0:
        raise ValueError(f"recent_files needs limit >= 0, got {limit}")
    sequence: list[str] = []
    for e in sorted(events, key=lambda e: e.seq):
        if e.type in ("file_opened", "file_edited", "module_started", "module_complete"):
            paths = [e.data["path"]]
        elif e.type == "error":
            paths = [r["path"] for r in e.data.get("refs", ())]
        else:
            continue
        for path in paths:
            if not sequence or sequence[-1] != path:
                sequence.append(path)
    return sequence[-limit:] if limit else []


# --------------------------------------------------------------------------- #
# The log on disk
# --------------------------------------------------------------------------- #

def forget_all(conn: Any) -> None:
    """Drop every event and recreate the empty table; only for a workspace reset, in one transaction."""
    if conn.in_transaction:
        raise RuntimeError("forget_all: the connection has an open transaction; commit or roll it back first")
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.execute("DROP TABLE IF EXISTS events")  # takes its index and triggers with it
        for statement in _SCHEMA_STATEMENTS:
            conn.execute(statement)
    except BaseException:
        conn.rollback()
        raise
    conn.commit()


class EventLog:
    """Append and replay task events over an open DB-API connection whose schema has ``EVENTS_SCHEMA``.

    With ``root``, paths inside the workspace are stored relative to it, and error
    frames outside it (stdlib, site-packages) are dropped from ``refs``.
    """

    def __init__(
        self,
        conn: Any,
        clock: Callable[[], float] = time.time,
        root: str | os.PathLike[str] | None = None,
    ) -> None:
        self._conn = conn
        self._clock = clock
        self._root = root

    def append(self, task_id: str, type: str, data: dict[str, Any] | None = None) -> Event:
        """Record one event in its own transaction and return it as stored."""
        if (not isinstance(task_id, str) or not task_id.strip() or len(task_id) > MAX_TASK_ID
                or not task_id.isprintable()):  # a newline would break every line and header that names it
            raise ValueError(f"task_id must be a non-empty string of at most {MAX_TASK_ID} printable chars, "
                             f"got {task_id!r:.80}")
        payload = _capped(self._normalize(type, validate(type, data)))
        if self._conn.in_transaction:
            raise RuntimeError(
                f"event log: cannot append {type!r} for task {task_id!r} inside an open transaction; commit first"
            )
        now = float(self._clock())
        text = json.dumps(payload, ensure_ascii=False, sort_keys=True)
        with self._conn:
            cur = self._conn.execute(
                "INSERT INTO events(time, task_id, type, payload) VALUES (?, ?, ?, ?)",
                (now, task_id, type, text),
            )
        return Event(seq=int(cur.lastrowid), time=now, task_id=task_id, type=type, data=json.loads(text))

    def _normalize(self, type: str, data: dict[str, Any]) -> dict[str, Any]:
        """Workspace-relative paths, and the refs and message an error's traceback gives."""
        if "path" in data and self._root is not None:
            data["path"] = workspace_path(data["path"], self._root) or data["path"]
        if type == "test_result" and self._root is not None:  # its file as file events name it
            head, sep, rest = data["test"].partition("::")
            data["test"] = (workspace_path(head.strip(), self._root) or head) + sep + rest
        if type == "error":
            trace = data.get("traceback", "")
            refs = parse_traceback(trace)
            if self._root is not None:
                refs = relativize(refs, self._root)
            data["refs"] = [r.to_json() for r in refs]
            if not data.get("message"):
                data["message"] = error_message(trace)
        return data

    def events(self, task_id: str | None = None, after: int = 0, upto: int | None = None) -> list[Event]:
        """Events with ``after < seq <= upto`` (all tasks, or one), in seq order."""
        sql = "SELECT seq, time, task_id, type, payload FROM events WHERE seq > ?"
        params: list[Any] = [after]
        if task_id is not None:
            sql += " AND task_id = ?"
            params.append(task_id)
        if upto is not None:
            sql += " AND seq <= ?"
            params.append(upto)
        rows = self._conn.execute(sql + " ORDER BY seq", params).fetchall()
        return [Event(int(s), float(t), k, ty, json.loads(p)) for s, t, k, ty, p in rows]

    def tasks(self) -> list[str]:
        """Task ids, the one with the most recent event first."""
        rows = self._conn.execute(
            "SELECT task_id FROM events GROUP BY task_id ORDER BY MAX(seq) DESC"
        ).fetchall()
        return [r[0] for r in rows]

    def has_task(self, task_id: str) -> bool:
        """Whether any event names this task."""
        return self._conn.execute("SELECT 1 FROM events WHERE task_id = ? LIMIT 1", (task_id,)).fetchone() is not None

    def last_seq(self) -> int:
        """The seq of the newest event, 0 for an empty log."""
        row = self._conn.execute("SELECT COALESCE(MAX(seq), 0) FROM events").fetchone()
        return int(row[0])

    def state(self, task_id: str, at: int | None = None) -> TaskState:
        """The task as it stood after event ``at`` (default: now); UnknownTask if it had no events yet."""
        if at is not None and not 0 <= at <= _MAX_SEQ:
            raise ValueError(f"at must be an event sequence number (1 is the first event), not {at}")
        events = self.events(task_id, upto=at)
        if not events:
            known = self.tasks()
            if at is not None and task_id in known:
                first = self.events(task_id)[0].seq
                raise UnknownTask(f"no events for task {task_id!r} up to seq {at}: its first event is seq {first}")
            when = "" if at is None else f" up to seq {at}"
            hint = f"known tasks: {', '.join(known[:10])}" if known else "the log is empty"
            raise UnknownTask(f"no events for task {task_id!r}{when}; record 'task_started' first ({hint})")
        return fold(events)
