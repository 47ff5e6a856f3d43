"""Next-file prediction: online and deterministic learning, persistence, reasons on a real index, bounded prefetch."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from conftest import git
from indexer import sqlite
from indexer.predict import Predictor, Prefetcher, PredictStore, SqliteGraphView, StaticGraph
from indexer.workspace import Workspace

EVENTS = [("t1", "a.py"), ("t1", "b.py"), ("t1", "c.py"), ("t2", "a.py"), ("t2", "b.py"),
          ("t2", "a.py"), ("t3", "c.py"), ("t3", "a.py"), ("t3", "b.py")]


def _replay(predictor: Predictor, events=EVENTS) -> Predictor:
    for task, path in events:
        predictor.observe(path, task_id=task)
    return predictor


def _write(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    root = tmp_path_factory.mktemp("ws")
    _write(root, {
        "pkg/__init__.py": "",
        "pkg/app.py": "from pkg import util\nfrom pkg.sub.deep import helper\n\n"
                      "def main():\n    return util.add(1, 2) + helper()\n",
        "pkg/util.py": "def add(a, b):\n    \"\"\"Add two numbers.\"\"\"\n    return a + b\n",
        "pkg/other.py": "VALUE = 1\n",
        "pkg/sub/__init__.py": "",
        "pkg/sub/deep.py": "def helper():\n    return 1\n",
        "tests/test_util.py": "from pkg.util import add\n\ndef test_add():\n    assert add(1, 2) == 3\n",
    })
    ws = Workspace(root, index_dir=tmp_path_factory.mktemp("idx"))
    ws.index()
    yield ws
    ws.close()


def test_learning_is_online_and_deterministic():
    first, second = _replay(Predictor()), _replay(Predictor())
    assert first.to_state() == second.to_state()
    assert first.predict(task_id="t3") == second.predict(task_id="t3")
    # Online: a new move is predicted right after it is observed once.
    assert "z.py" not in [p.path for p in first.predict("b.py", task_id="t9")]
    first.observe("b.py", task_id="t4")
    first.observe("z.py", task_id="t4")
    first.observe("b.py", task_id="t5")
    top = first.predict(task_id="t5")
    assert "z.py" in [p.path for p in top]
    assert first.stats()["moves_scored"] == second.stats()["moves_scored"] + 3
    assert all(0 < p.score <= 1 for p in top) and sorted((p.score for p in top), reverse=True) == [p.score for p in top]


def test_blend_weights_learn_toward_the_signal_that_was_right():
    graph = StaticGraph(["a.py", "c.py", "x/b.py"], imports={"a.py": {"x/b.py"}})
    predictor = Predictor(graph, signals=("imported_by_current", "same_directory"))
    before = dict(predictor.weights["task"])
    # From a.py the agent always opens the import x/b.py, never its neighbour c.py.
    _replay(predictor, [(f"t{i}", p) for i in range(10) for p in ("a.py", "x/b.py")])
    assert predictor.weights["task"]["imported_by_current"] > before["imported_by_current"]
    assert predictor.weights["task"]["same_directory"] < before["same_directory"]
    assert Predictor(graph, learn_weights=False).weights == Predictor(graph).weights  # priors to start


def test_persistence_round_trips_in_a_real_database(tmp_path):
    db = tmp_path / "index.db"
    conn = sqlite.connect(db)
    trained = _replay(Predictor(store=PredictStore(conn)))
    trained.learn_commit(["a.py", "d.py"])
    trained.set_query("t3", "fix the parser")
    trained.save()
    conn.close()
    conn = sqlite.connect(db)
    restored = Predictor(store=PredictStore(conn))
    assert restored.to_state() == trained.to_state()
    assert restored.predict(task_id="t3") == trained.predict(task_id="t3")
    restored.reset()
    again = Predictor(store=PredictStore(conn))
    assert again.stats()["moves_scored"] == 0 and again.load() is False
    conn.close()


def test_reasons_on_a_hand_made_workspace(workspace):
    graph = SqliteGraphView(workspace.reader, ranked=workspace.ranked)
    assert graph.imports_of("pkg/app.py") == {"pkg/__init__.py", "pkg/util.py", "pkg/sub/deep.py"}
    assert graph.tests_of("pkg/util.py") == {"tests/test_util.py"}
    predictor = Predictor(graph)
    for i in range(4):
        predictor.observe("pkg/app.py", task_id=f"t{i}")
        predictor.observe("pkg/util.py" if i < 3 else "pkg/other.py", task_id=f"t{i}")
    predictor.observe("pkg/app.py", task_id="now")
    reasons = {p.path: p.reasons for p in predictor.predict(task_id="now", top_k=10)}
    assert "followed it 3 of 4 times" in reasons["pkg/util.py"]
    assert "imported by the current file" in reasons["pkg/util.py"]
    assert "imported by the current file" in reasons["pkg/sub/deep.py"]
    assert "in the same directory" in reasons["pkg/other.py"]
    assert "followed it 1 of 4 times" in reasons["pkg/other.py"]
    assert reasons.keys() <= set(graph.files()) and "pkg/app.py" not in reasons
    from_util = {p.path: p.reasons for p in predictor.predict("pkg/util.py", task_id="other")}
    assert "tests the current file" in from_util["tests/test_util.py"]
    assert "imports the current file" in from_util["pkg/app.py"]
    found = {p.path: p.reasons for p in Predictor(graph).predict(task_id="q", query="add two numbers")}
    assert any(r.startswith("matches the task description") for r in found["pkg/util.py"])
    assert "a test the task description points at (#1 of the tests)" in found["tests/test_util.py"]
    assert not any(r.startswith("a test the task") for r in found["pkg/util.py"])


def test_moves_outside_any_task_are_explained_as_a_session(workspace):
    predictor = Predictor(SqliteGraphView(workspace.reader, ranked=workspace.ranked))
    for path in ("pkg/util.py", "pkg/app.py"):
        predictor.observe(path)
        predictor.observe(path, task_id="T")
    untasked = [r for p in predictor.predict(top_k=10) for r in p.reasons]
    tasked = [r for p in predictor.predict(task_id="T", top_k=10) for r in p.reasons]
    assert "seen 1 step ago in this session" in untasked and not any("in this task" in r for r in untasked)
    assert "seen 1 step ago in this task" in tasked


def test_task_tests_ranks_the_querys_tests_among_themselves():
    from indexer.predict.signals import task_tests

    hits = [("pkg/core.py", 9.0), ("tests/test_core.py", 2.0), ("pkg/io.py", 1.5), ("pkg/test_io.py", 1.0),
            ("tests/test_old.py", 0.5), ("tests/test_zero.py", 0.0)]
    scored = task_tests(hits, seen={"tests/test_old.py"})
    # Tests only, in the search's order, the file already seen in the task and a zero-score hit left out.
    assert list(scored) == ["tests/test_core.py", "pkg/test_io.py"]
    assert scored["tests/test_core.py"][0] == 1.0 and scored["pkg/test_io.py"][0] == pytest.approx(2 ** -0.5)
    assert scored["pkg/test_io.py"][1] == "a test the task description points at (#2 of the tests)"


def test_tests_run_in_task_scores_unopened_run_tests_latest_first():
    from indexer.predict.signals import tests_run_in_task

    scored = tests_run_in_task(["tests/a.py", "tests/b.py", "tests/c.py", "tests/a.py"], seen={"tests/c.py"})
    # Latest run first (a.py ran again last), an opened test left out, each listed once.
    assert list(scored) == ["tests/a.py", "tests/b.py"]
    assert scored["tests/a.py"] == (1.0, "ran as a test in this task")
    assert scored["tests/b.py"][0] == pytest.approx(2 ** -0.5)
    assert tests_run_in_task([], seen=()) == {}


def _run_test_graph() -> StaticGraph:
    files = ["pkg/core.py", "pkg/io.py", "pkg/misc.py", "tests/test_core.py", "tests/test_io.py"]
    return StaticGraph(files, imports={"pkg/core.py": {"pkg/io.py", "pkg/misc.py"}})


def test_a_test_run_ranks_the_test_file_and_is_not_a_visit():
    events = [("t1", "pkg/core.py"), ("t1", "pkg/io.py"), ("t2", "pkg/core.py")]
    predictor, twin = _replay(Predictor(_run_test_graph()), events), _replay(Predictor(_run_test_graph()), events)
    before = [p.path for p in predictor.predict(task_id="t2", top_k=10)]
    assert "tests/test_core.py" not in before  # no signal reaches it: no import, no test link, no query
    predictor.observe_test_run("tests/test_io.py", task_id="t2")
    predictor.observe_test_run("tests/test_core.py", task_id="t2")
    predictor.observe_test_run("tests/test_core.py", task_id="t2")  # a rerun is one candidate
    top = predictor.predict(task_id="t2", top_k=10)
    ranked = [p.path for p in top]
    assert ranked.index("tests/test_core.py") < ranked.index("tests/test_io.py")  # the latest run first
    assert "ran as a test in this task" in top[ranked.index("tests/test_core.py")].reasons
    # Not a visit: the model equals a twin's that saw the same moves and no runs, but for the runs themselves.
    twin.predict(task_id="t2", top_k=10)
    twin.predict(task_id="t2", top_k=10)
    state, twin_state = predictor.to_state(), twin.to_state()
    assert [row[-1] for row in state["trails"]] == [[], ["tests/test_io.py", "tests/test_core.py"]]
    state["trails"] = [row[:-1] for row in state["trails"]]
    twin_state["trails"] = [row[:-1] for row in twin_state["trails"]]
    assert state == twin_state
    trail = predictor.trails["t2"]
    assert trail.files == ["pkg/core.py"] and trail.visits == {"pkg/core.py": 1}
    assert trail.tests_run == ["tests/test_io.py", "tests/test_core.py"]
    assert predictor.recent[0] == "pkg/core.py" and "tests/test_core.py" not in predictor.visit_counts
    # Another task does not see t2's runs; once opened, the test is a visited file, no longer a run candidate.
    assert not any("ran as a test in this task" in p.reasons for p in predictor.predict("pkg/core.py", task_id="t3"))
    predictor.observe("tests/test_core.py", task_id="t2")
    reasons = {p.path: p.reasons for p in predictor.predict(task_id="t2", top_k=10)}
    assert "ran as a test in this task" not in reasons.get("pkg/core.py", [])
    assert "ran as a test in this task" in reasons["tests/test_io.py"]


def test_test_runs_are_deterministic_and_persist(tmp_path):
    def run(store=None) -> Predictor:
        predictor = _replay(Predictor(_run_test_graph(), store=store), [("t1", "pkg/core.py"), ("t1", "pkg/io.py")])
        predictor.observe_test_run("tests/test_core.py", task_id="t1")
        predictor.observe("tests/test_core.py", task_id="t1")  # learned with the signal in the candidates
        predictor.observe_test_run("tests/test_io.py", task_id="t1")
        return predictor

    first, second = run(), run()
    assert first.to_state() == second.to_state() and first.predict(task_id="t1") == second.predict(task_id="t1")
    db = tmp_path / "index.db"
    conn = sqlite.connect(db)
    trained = run(PredictStore(conn))
    trained.save()
    conn.close()
    conn = sqlite.connect(db)
    restored = Predictor(_run_test_graph(), store=PredictStore(conn))
    assert restored.to_state() == trained.to_state()
    assert restored.trails["t1"].tests_run == ["tests/test_core.py", "tests/test_io.py"]
    assert restored.predict(task_id="t1") == trained.predict(task_id="t1")
    # A state saved before test runs were kept (five fields per trail) still loads, with no runs.
    old = trained.to_state()
    old["trails"] = [row[:5] for row in old["trails"]]
    restored.from_state(old)
    assert restored.trails["t1"].tests_run == [] and restored.trails["t1"].files == trained.trails["t1"].files
    conn.close()


def test_a_test_result_event_feeds_the_predictor(tmp_path):
    root = tmp_path / "ws"
    _write(root, {"pkg/core.py": "def f():\n    return 1\n",
                  "tests/test_core.py": "def test_f():\n    assert True\n"})
    with Workspace(root, index_dir=tmp_path / "idx") as ws:
        ws.index()
        ws.record("T", "file_opened", {"path": "pkg/core.py"})
        ws.record("T", "test_result", {"test": "tests/test_core.py::test_f", "passed": False})
        ws.record("T", "test_result", {"test": "no/such/file.py::test_x", "passed": True})
        ws.record("T", "test_result", {"test": "test_f", "passed": True})
        trail = ws.predictor.trails["T"]
        assert trail.tests_run == ["tests/test_core.py"] and trail.files == ["pkg/core.py"]
        reasons = {p.path: p.reasons for p in ws.predictor.predict(task_id="T")}
        assert "ran as a test in this task" in reasons["tests/test_core.py"]


def test_a_file_event_outside_the_workspace_is_stored_once_and_is_no_move(tmp_path):
    """The agent may open any file; one outside the workspace is recorded as given (an error raised after the
    append had stored it all the same, and an agent retrying stored it twice), and teaches no move."""
    root = tmp_path / "ws"
    _write(root, {"pkg/core.py": "def f():\n    return 1\n"})
    with Workspace(root, index_dir=tmp_path / "idx") as ws:
        ws.index()
        ws.record("T", "file_opened", {"path": "pkg//core.py"})
        for path in ("/etc/passwd", "../outside.py"):
            assert ws.record("T", "file_edited", {"path": path}).data["path"] == path
        assert ws.task_state("T").files_edited == ("/etc/passwd", "../outside.py")
        assert ws.predictor.trails["T"].files == ["pkg/core.py"]


def test_a_file_event_for_a_file_that_is_not_there_is_stored_and_is_no_move(tmp_path):
    root = tmp_path / "ws"
    _write(root, {"pkg/core.py": "def f():\n    return 1\n", "pkg/util.py": "def g():\n    return 2\n"})
    with Workspace(root, index_dir=tmp_path / "idx") as ws:
        ws.index()
        ws.record("T", "file_opened", {"path": "pkg/core.py"})
        ws.record("T", "file_opened", {"path": "does/not/exist.py"})
        ws.record("T", "file_opened", {"path": "pkg\\util.py"})  # as a Windows editor spells it
        assert ws.task_state("T").files_opened[-2:] == ("does/not/exist.py", "pkg\\util.py")
        assert ws.predictor.trails["T"].files == ["pkg/core.py", "pkg/util.py"]


def _commit_each(root, file_sets: list[dict[str, str]]) -> None:
    """A git repository at ``root`` with one commit per file set."""
    git(root, "init", "-q")
    for n, files in enumerate(file_sets):
        _write(root, files)
        git(root, "add", "-A")
        git(root, "commit", "-q", "-m", f"c{n}")


def test_mine_git_learns_co_change_and_ignores_large_commits(tmp_path):
    _commit_each(tmp_path, [{"a.py": f"x = {n}\n", "b.py": f"y = {n}\n"} for n in range(3)]
                 + [{f"big/m{i}.py": "" for i in range(31)} | {"a.py": "x = 9\n"}])
    predictor = Predictor()
    assert predictor.mine_git(tmp_path) == 3
    assert predictor.mine_git(tmp_path) == 0  # nothing new since the mined head
    top = predictor.predict("a.py", task_id="t")
    assert top[0].path == "b.py" and "seen with a.py in 3 of 3 commits/tasks" in top[0].reasons
    assert Predictor().mine_git(tmp_path.parent / "nowhere") == 0


def test_mine_git_in_a_subfolder_learns_the_workspace_paths(tmp_path):
    _commit_each(tmp_path, [{"svc/a.py": f"x = {n}\n", "svc/b.py": f"y = {n}\n", "other/c.py": f"z = {n}\n"}
                            for n in range(2)])
    predictor = Predictor()
    assert predictor.mine_git(tmp_path / "svc") == 2
    top = predictor.predict("a.py", task_id="t")  # the workspace's own paths, not the repository's
    assert [p.path for p in top] == ["b.py"]


def test_cli_predict_learns_co_change_from_the_workspace_history(tmp_path):
    root = tmp_path / "ws"
    root.mkdir()
    _commit_each(root, [{"a.py": f"x = {n}\n", "b.py": f"y = {n}\n", "c.py": "z = 0\n"} for n in range(3)])
    done = subprocess.run([sys.executable, "-m", "server.cli", "predict", "--after", "a.py", "--workspace",
                           str(root), "--index-dir", str(tmp_path / "idx"), "--json"],
                          capture_output=True, text=True, check=True)
    top = json.loads(done.stdout)["predictions"][0]
    assert top["path"] == "b.py" and "seen with a.py in 3 of 3 commits/tasks" in top["reasons"]


class SlowBuild:
    """A build callable that takes time and records how many builds ran at once."""

    def __init__(self, delay: float, gate: threading.Event | None = None) -> None:
        self.delay, self.gate = delay, gate
        self.running = self.peak = 0
        self.built: list[str] = []
        self.lock = threading.Lock()

    def __call__(self, path: str, task_id: str | None = None) -> str:
        with self.lock:
            self.running += 1
            self.peak = max(self.peak, self.running)
        if self.gate is not None:
            self.gate.wait(5)
        time.sleep(self.delay)
        with self.lock:
            self.running -= 1
            self.built.append(path)
        return f"summary of {path}"


def test_prefetch_never_exceeds_its_bounds():
    build = SlowBuild(0.01)
    prefetcher = Prefetcher(build, max_queue=3, max_entries=2)
    try:
        for round_ in range(4):
            prefetcher.submit([f"r{round_}_{i}.py" for i in range(10)])
            assert prefetcher.stats()["queued"] <= 3
            assert prefetcher.wait_idle(5)
            assert prefetcher.stats()["entries"] <= 2
        stats = prefetcher.stats()
        assert build.peak == 1 and stats["dropped"] == 4 * 7 and stats["built"] == 4 * 3
        assert prefetcher.record_request("r3_2.py") == "summary of r3_2.py"
        assert prefetcher.record_request("r0_0.py") is None  # evicted: the cache holds 2
        assert prefetcher.stats()["hit_rate"] == 0.5
    finally:
        prefetcher.close()


def test_prefetch_is_cancelled_when_superseded():
    gate = threading.Event()
    build = SlowBuild(0.0, gate)
    prefetcher = Prefetcher(build)
    try:
        prefetcher.submit(["a.py", "b.py", "c.py"])
        deadline = time.monotonic() + 5
        while build.running == 0 and time.monotonic() < deadline:  # the worker has taken a.py
            time.sleep(0.005)
        prefetcher.submit(["x.py"])  # a newer event: b.py and c.py are stale
        gate.set()
        assert prefetcher.wait_idle(5)
        assert build.built == ["a.py", "x.py"]
        assert prefetcher.stats()["stale"] == 2
        assert prefetcher.is_prefetched("x.py") and not prefetcher.is_prefetched("b.py")
    finally:
        prefetcher.close()


def test_prefetch_entries_belong_to_their_task_and_a_build_invalidated_while_running_is_not_kept():
    gate = threading.Event()
    build = SlowBuild(0.0, gate)
    prefetcher = Prefetcher(build)
    try:
        prefetcher.submit(["a.py", "b.py"], task_id="t1")
        deadline = time.monotonic() + 5
        while build.running == 0 and time.monotonic() < deadline:  # the worker has taken a.py
            time.sleep(0.005)
        prefetcher.forget_task("t1")  # t1's state moved on while a.py was being built from the older one
        gate.set()
        assert prefetcher.wait_idle(5)
        assert build.built == ["a.py", "b.py"]
        assert not prefetcher.is_prefetched("a.py", "t1") and prefetcher.is_prefetched("b.py", "t1")
        assert prefetcher.record_request("b.py", "t2") is None  # built for t1: it does not serve t2
        assert prefetcher.record_request("b.py") is None  # nor a request made without a task
        assert prefetcher.record_request("b.py", "t1") == "summary of b.py"
        assert prefetcher.record_request("b.py", any_task=True) == "summary of b.py"  # task-free: t1's entry serves
        prefetcher.submit(["c.py"], task_id="t2")
        assert prefetcher.wait_idle(5)
        prefetcher.forget_task("t1")
        assert not prefetcher.is_prefetched("b.py", "t1") and prefetcher.is_prefetched("c.py", "t2")
        prefetcher.invalidate(["c.py"])  # a changed file is dropped whatever task it was built for
        assert prefetcher.stats()["entries"] == 0
    finally:
        prefetcher.close()


def test_prefetched_context_serves_the_tasks_next_request_through_the_workspace(tmp_path):
    root = tmp_path / "ws"
    _write(root, {"a.py": "from b import helper\n\ndef run():\n    return helper()\n",
                  "b.py": "def helper():\n    return 1\n", "c.py": "VALUE = 2\n"})
    with Workspace(root, index_dir=tmp_path / "idx") as ws:
        ws.index()
        ws.enable_prefetch(top_k=5)
        ws.record("t", "task_started", {"title": "call the helper"})
        ws.record("t", "file_opened", {"path": "a.py"})  # a move, not a request: nothing is answered yet
        prefetcher = ws._prefetcher
        assert prefetcher.wait_idle(10)
        assert prefetcher.is_prefetched("b.py", "t") and prefetcher.is_prefetched("c.py", "t")

        def context_hits() -> int:
            return ws.cache.stats()["tiers"]["context"]["hits"]

        assert context_hits() == 0
        served = ws.context(focus="b.py", task_id="t")  # the request carries the task: the prefetch built that
        assert prefetcher.wait_idle(10)
        assert context_hits() == 1 and "def helper" in served.text
        # A new event of the task makes what was built from its older state stale: it is rebuilt at once.
        ws.record("t", "note", {"text": "helper returns a constant"})
        assert prefetcher.wait_idle(10)
        ws.context(focus="c.py", task_id="t")
        assert context_hits() == 2
        assert ws.status()["prefetch"]["requests"] == 2 and ws.status()["prefetch"]["hits"] == 2
        assert prefetcher.wait_idle(10)
        ws.module_summary("a.py")  # a summary does not depend on the task: the one prefetched for t serves it
        assert ws.status()["prefetch"]["requests"] == 3 and ws.status()["prefetch"]["hits"] == 3
        # Without the task: another cache key. The summary request above was a task-less move, so whether b.py was
        # prefetched for no task depends on the ranking; either way a prefetch hit is exactly a cache hit.
        assert prefetcher.wait_idle(10)
        prefetched = int(prefetcher.is_prefetched("b.py", None))
        ws.context(focus="b.py")
        assert context_hits() == 2 + prefetched and ws.status()["prefetch"]["hits"] == 3 + prefetched


def test_prefetch_follows_the_predictor():
    predictor = _replay(Predictor(StaticGraph(["a.py", "b.py", "c.py"])))
    build = SlowBuild(0.0)
    prefetcher = Prefetcher(build)
    try:
        predictor.observe("a.py", task_id="live")
        prefetcher.after_event(predictor, task_id="live", top_k=1)
        assert prefetcher.wait_idle(5)
        assert build.built == [predictor.predict(task_id="live", top_k=1)[0].path] == ["b.py"]
    finally:
        prefetcher.close()


def test_expert_switch_follows_the_ranking_that_was_right_and_keeps_the_blend_otherwise():
    from indexer.predict.experts import BLEND, ExpertSwitch, rank_of

    switch = ExpertSwitch(["task"], ["co_change", "markov"])
    files = [f"f{i}.py" for i in range(6)]
    for step in range(60):
        actual = files[step % 6]
        # the blend ranks the actual file last; co-change scores it highest; markov scores a wrong file
        ranked = [(p, -1.0 if p == actual else 1.0 - i * 0.1,
                   {"co_change": (1.0 if p == actual else 0.1, "c"), "markov": (1.0 if p != actual else 0.0, "m")})
                  for i, p in enumerate(files)]
        assert rank_of(ranked, actual, "co_change") == 1 and rank_of(ranked, actual, BLEND) == 6
        if step == 0:
            assert switch.best("task") == BLEND  # the blend's head start: one move proves nothing
        switch.update("task", ranked, actual)
    assert switch.best("task") == "co_change"
    copy = ExpertSwitch(["task"], ["co_change", "markov"])
    copy.load_state(switch.to_state())
    assert copy.best("task") == "co_change"

    fair = ExpertSwitch(["task"], ["markov"])
    for step in range(60):
        actual = files[step % 6]
        ranked = [(p, 1.0 if p == actual else 0.0, {"markov": (1.0 if p != actual else 0.0, "m")}) for p in files]
        fair.update("task", ranked, actual)
    assert fair.best("task") == BLEND


def test_co_change_with_a_half_life_follows_the_recent_coupling():
    from indexer.predict.cochange import CoChange

    plain, decayed = CoChange(), CoChange(half_life=10)
    for model in (plain, decayed):
        for _ in range(30):
            model.learn_set(["a.py", "b.py"])  # the old partner of a.py
        for _ in range(30):
            model.learn_set(["a.py", "c.py"])  # its partner lately
    # ROSE counts the two alike; the decayed tally has mostly forgotten b.py.
    assert plain.noisy_or({"a.py": 1.0})["b.py"] == pytest.approx(plain.noisy_or({"a.py": 1.0})["c.py"])
    conf = decayed.noisy_or({"a.py": 1.0})
    assert conf["c.py"] > 0.8 and conf["b.py"] < 0.15  # 30 transactions = 3 half lives: b.py weighs 1/8
    assert decayed.scores({"a.py": 1.0}) == plain.scores({"a.py": 1.0}) == {"b.py": 0.5, "c.py": 0.5}
    assert decayed.reason(["a.py"], "b.py") == "seen with a.py in 30 of 60 commits/tasks"  # raw counts
    # Open task sets weigh as their transaction did; the state round-trips, and a state saved without
    # a decayed tally (or with another half life) starts one from the raw counts.
    decayed.add_to_open("t", "a.py")
    decayed.add_to_open("t", "d.py")
    again = CoChange.from_state(decayed.to_state(), half_life=10)
    assert again.to_state() == decayed.to_state() and again.noisy_or({"a.py": 1.0}) == decayed.noisy_or({"a.py": 1.0})
    fresh = CoChange.from_state(plain.to_state(), half_life=10)
    assert fresh.noisy_or({"a.py": 1.0}) == pytest.approx(plain.noisy_or({"a.py": 1.0}))
    fresh.learn_set(["a.py", "c.py"])
    assert fresh.noisy_or({"a.py": 1.0})["c.py"] > fresh.noisy_or({"a.py": 1.0})["b.py"]


def test_co_change_decay_rescales_before_overflow_and_keeps_the_confidences():
    from indexer.predict.cochange import RESCALE_ABOVE, CoChange

    model = CoChange(half_life=1.0)  # doubles per transaction: 2**400 would overflow the 1e100 bound
    for i in range(400):
        model.learn_set(["a.py", "b.py" if i % 2 else "c.py"])
    assert model.scale <= RESCALE_ABOVE and all(math.isfinite(w) for w in model.mass.values())
    # conf(a -> b) = sum of 2**i over the odd i / sum over all i = 2/3 (the last transaction held b.py)
    n = model.mass["a.py"]
    assert model.mass_pairs["a.py"]["b.py"] / n == pytest.approx(2 / 3)
    assert model.mass_pairs["a.py"]["c.py"] / n == pytest.approx(1 / 3)


def test_predictor_ranks_the_recent_co_change_partner_first():
    predictor = Predictor()
    for partner in ("b.py", "c.py"):
        for _ in range(300):
            predictor.learn_commit(["a.py", partner])
    predictor.observe("a.py", task_id="t")
    top = predictor.predict(task_id="t", top_k=2)
    # Equal raw counts (300 each), but b.py's commits are 300 commits old: 1.5 half lives at the default 200.
    assert [p.path for p in top] == ["c.py", "b.py"] and top[0].score > top[1].score
    assert "seen with a.py in 300 of 601 commits/tasks" in top[0].reasons  # 601: this task holds a.py too


def test_a_request_of_another_shape_is_no_prefetch_hit(tmp_path):
    root = tmp_path / "ws"
    _write(root, {"a.py": "from b import helper\n\ndef run():\n    return helper()\n",
                  "b.py": "def helper():\n    return 1\n"})
    with Workspace(root, index_dir=tmp_path / "idx") as ws:
        ws.index()
        ws.enable_prefetch(top_k=5)
        ws.record("t", "task_started", {"title": "call the helper"})
        ws.record("t", "file_opened", {"path": "a.py"})
        assert ws._prefetcher.wait_idle(10) and ws._prefetcher.is_prefetched("b.py", "t")
        ws.context(focus="b.py", task_id="t", budget=500)  # built at the default budget: another cache key
        cache = ws.cache.stats()["tiers"]["context"]
        assert (cache["hits"], cache["misses"]) == (0, 1)  # the prefetch's own looks counted nothing
        assert ws.status()["prefetch"]["hits"] == 0 and ws.status()["prefetch"]["requests"] == 1


def test_scores_follow_the_order_when_one_signal_ranks():
    graph = StaticGraph(["a.py", "b.py", "c.py", "d.py"], imports={"a.py": {"b.py"}, "d.py": {"c.py"}})
    predictor = _replay(Predictor(graph))
    predictor.switch.score["task"]["linked_to_task"] = 1e6  # as after a run of moves this signal ranked best
    predictions = predictor.predict(task_id="t3", top_k=4)
    scores = [p.score for p in predictions]
    assert scores == sorted(scores, reverse=True)  # no score contradicts the order shown
    assert predictions[0].reasons[0].startswith("linked by imports to")  # the ranking signal's reason first


def test_a_task_without_files_names_no_current_file():
    graph = StaticGraph(["a.py", "b.py"], imports={"a.py": {"b.py"}})
    predictor = Predictor(graph)
    predictor.observe("a.py", task_id="t1")
    reasons = {p.path: p.reasons for p in predictor.predict(task_id="t2")}
    assert "imported by the last file opened" in reasons["b.py"]


def test_a_save_merges_what_another_process_saved_since_its_load(tmp_path):
    db = tmp_path / "index.db"
    first, second = (Predictor(StaticGraph(["a.py", "b.py", "c.py"]), store=PredictStore(sqlite.connect(db)))
                     for _ in range(2))
    first.observe("a.py", task_id="t1")
    first.observe("b.py", task_id="t1")
    first.set_query("t1", "fix b")
    second.observe("c.py", task_id="t2")
    second.observe_test_run("b.py", task_id="t2")
    first.save()
    second.save()  # loaded before first saved: merges instead of replacing
    merged = Predictor(StaticGraph(["a.py", "b.py", "c.py"]), store=PredictStore(sqlite.connect(db)))
    assert merged.trails["t1"].files == ["a.py", "b.py"] and merged.trails["t1"].query == "fix b"
    assert merged.trails["t2"].files == ["c.py"] and merged.trails["t2"].tests_run == ["b.py"]
    assert merged.to_state() == second.to_state()  # the saver's model is the merged one too
    first.reset()
    second.observe("a.py", task_id="t3")
    second.save()  # after a reset elsewhere: only its moves since
    again = Predictor(StaticGraph(["a.py", "b.py", "c.py"]), store=PredictStore(sqlite.connect(db)))
    assert set(again.trails) == {"t3"}
