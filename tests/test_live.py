"""The live workspace: a real watchdog observer keeps search and the graph fresh."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import pytest

from indexer.search.vectors import stored_progress
from indexer.workspace import Workspace

TIMEOUT = 15.0


def _write(root: Path, rel: str, text: str) -> None:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def _eventually(check, timeout: float = TIMEOUT) -> None:
    """Poll ``check`` until it is truthy; fail with its last value."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return
        if time.monotonic() > deadline:
            pytest.fail(f"condition not met within {timeout}s (last value {value!r})")
        time.sleep(0.05)


def _watch_process(root: Path, index_dir: Path, embedder: str = "none"):
    """``codeahead watch`` in a process of its own (what a user runs), its output captured."""
    import subprocess
    import sys

    return subprocess.Popen([sys.executable, "-m", "server.cli", "watch", "-w", str(root), "--index-dir",
                             str(index_dir)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "CODEAHEAD_EMBEDDER": embedder})


def _names(ws: Workspace, query: str) -> set[str]:
    return {h.node.qualname for h in ws.search(query, top_k=20)}


@pytest.fixture
def live(tmp_path):
    root = tmp_path / "ws"
    _write(root, "app/__init__.py", "")
    _write(root, "app/core.py", "def compute_total(items):\n    return sum(items)\n")
    _write(root, "app/api.py", "from app.core import compute_total\n\n"
                               "def handler(items):\n    return compute_total(items)\n")
    ws = Workspace(root, index_dir=tmp_path / "idx")
    ws.index()
    batches: list = []
    ws.start_watching(on_applied=lambda batch, stats: batches.append((batch, stats)), debounce=0.05)
    yield root, ws, batches
    ws.close()


def test_created_file_is_searchable_and_linked(live):
    root, ws, _ = live
    _write(root, "app/report.py", "from app.core import compute_total\n\n"
                                  "def render_invoice_report(items):\n    return compute_total(items)\n")
    _eventually(lambda: "app.report.render_invoice_report" in _names(ws, "render invoice report"))
    callers = {l.node.qualname for l in ws.related("app.core.compute_total", kinds=["called_by"])}
    assert "app.report.render_invoice_report" in callers


def test_modified_file_replaces_its_nodes(live):
    root, ws, _ = live
    _write(root, "app/core.py", "def compute_grand_total(items):\n    return sum(items)\n")
    _eventually(lambda: "app.core.compute_grand_total" in _names(ws, "compute grand total"))
    assert "app.core.compute_total" not in _names(ws, "compute total")
    # The caller's edge to the old name is gone; no dangling edge remains.
    assert not ws.related("app.api.handler", kinds=["calls"])


def test_deleted_file_leaves_no_nodes_or_edges(live):
    root, ws, _ = live
    (root / "app/core.py").unlink()
    _eventually(lambda: "app.core.compute_total" not in _names(ws, "compute total"))
    conn = ws.reader()
    assert conn.execute("SELECT count(*) FROM files WHERE path='app/core.py'").fetchone()[0] == 0
    dangling = conn.execute("SELECT count(*) FROM edges WHERE dst NOT IN (SELECT id FROM nodes) "
                            "OR src NOT IN (SELECT id FROM nodes)").fetchone()[0]
    assert dangling == 0


def test_moved_folder_is_reindexed_under_its_new_path(live):
    root, ws, _ = live
    os.rename(root / "app", root / "service")
    _eventually(lambda: any(n.startswith("service.core") for n in _names(ws, "compute total")))
    assert ws.node("service/core.py").qualname == "service.core"
    assert not ws.reader().execute("SELECT count(*) FROM files WHERE path LIKE 'app/%'").fetchone()[0]


def test_ignored_and_swap_files_never_reach_the_index(live):
    root, ws, batches = live
    _write(root, ".gitignore", "generated/\n")
    _eventually(lambda: batches)  # the ignore file itself triggers a (full) pass
    _write(root, "generated/out.py", "def generated_marker_function():\n    pass\n")
    _write(root, "app/.core.py.swp", "def swap_marker_function():\n    pass\n")
    _write(root, "app/visible.py", "def visible_marker_function():\n    pass\n")
    _eventually(lambda: "app.visible.visible_marker_function" in _names(ws, "visible marker function"))
    assert not _names(ws, "generated marker function") & {"generated.out.generated_marker_function"}
    assert ws.reader().execute("SELECT count(*) FROM files WHERE path LIKE 'generated/%'").fetchone()[0] == 0


def test_burst_of_500_writes_is_applied_in_few_passes(live):
    root, ws, batches = live
    before = len(batches)
    for i in range(500):
        _write(root, f"bulk/mod_{i:03d}.py", f"def bulk_function_{i:03d}():\n    return {i}\n")
    _eventually(lambda: ws.reader().execute(
        "SELECT count(*) FROM files WHERE path LIKE 'bulk/%'").fetchone()[0] == 500, timeout=60)
    # The last files' later events (a close after the create) may still be pending: wait them out, so
    # every pass the burst causes is counted.
    _eventually(lambda: ws.freshness()["pending_changes"] == 0, timeout=10)
    assert len(batches) - before <= 10, f"{len(batches) - before} passes for one burst"


def test_change_while_not_watching_is_reconciled_on_open(tmp_path):
    root = tmp_path / "ws"
    _write(root, "m.py", "def before_change():\n    pass\n")
    with Workspace(root, index_dir=tmp_path / "idx") as ws:
        ws.index()
    # Nothing watches now: edit, add and delete files.
    _write(root, "m.py", "def after_change():\n    pass\n")
    _write(root, "n.py", "def brand_new_function():\n    pass\n")
    with Workspace(root, index_dir=tmp_path / "idx") as ws:
        stats = ws.index()  # what `serve` and `watch` do on open
        assert stats.files_parsed == 2
        assert "m.after_change" in _names(ws, "after change")
        assert "m.before_change" not in _names(ws, "before change")
        assert "n.brand_new_function" in _names(ws, "brand new function")


def test_queries_during_a_large_reindex_never_see_dangling_edges(tmp_path):
    root = tmp_path / "ws"
    for i in range(150):
        _write(root, f"pkg/m{i:03d}.py", f"from pkg.m{(i + 1) % 150:03d} import f{(i + 1) % 150:03d}\n\n"
                                         f"def f{i:03d}():\n    return f{(i + 1) % 150:03d}()\n")
    _write(root, "pkg/__init__.py", "")
    ws = Workspace(root, index_dir=tmp_path / "idx")
    ws.index()
    problems: list[str] = []
    stop = threading.Event()

    def reader() -> None:
        conn = ws.reader()
        while not stop.is_set():
            conn.execute("BEGIN")
            dangling = conn.execute("SELECT count(*) FROM edges WHERE dst NOT IN (SELECT id FROM nodes) "
                                    "OR src NOT IN (SELECT id FROM nodes)").fetchone()[0]
            files = conn.execute("SELECT count(*) FROM files").fetchone()[0]
            conn.rollback()
            if dangling:
                problems.append(f"{dangling} dangling edges")
            if files not in (151, 151):
                problems.append(f"{files} files")

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        for round_ in range(3):
            for i in range(150):  # rewrite every module: a full re-index of changed content
                _write(root, f"pkg/m{i:03d}.py", f"from pkg.m{(i + 1) % 150:03d} import f{(i + 1) % 150:03d}\n\n"
                                                 f"def f{i:03d}():\n    return f{(i + 1) % 150:03d}() + {round_}\n")
            ws.index()
    finally:
        stop.set()
        thread.join()
        ws.close()
    assert not problems, problems[:5]


def test_an_edited_gitignore_applies_to_later_changes(live):
    root, ws, batches = live
    _write(root, "scratch/keep.py", "def scratch_marker_one():\n    pass\n")
    _eventually(lambda: ws.reader().execute(
        "SELECT count(*) FROM files WHERE path = 'scratch/keep.py'").fetchone()[0])
    _write(root, ".gitignore", "scratch/\n")
    _eventually(lambda: not ws.reader().execute(
        "SELECT count(*) FROM files WHERE path LIKE 'scratch/%'").fetchone()[0])
    _write(root, "scratch/later.py", "def scratch_marker_two():\n    pass\n")
    _write(root, "app/after.py", "def after_marker_function():\n    pass\n")
    _eventually(lambda: "app.after.after_marker_function" in _names(ws, "after marker function"))
    assert not ws.reader().execute("SELECT count(*) FROM files WHERE path LIKE 'scratch/%'").fetchone()[0]
    # The watcher itself filters with the new rules: the ignored file never reaches a batch.
    assert not any("scratch/later.py" in batch.changed for batch, _ in batches)


def test_a_name_not_utf8_is_skipped_and_skips_leave_with_their_files(live):
    root, ws, _ = live
    bad = os.fsencode(root / "app") + b"/caf\xe9.py"
    with open(bad, "wb") as f:
        f.write(b"def odd():\n    return 1\n")
    (root / "app" / "big.py").write_text("X = 1\n" * 300_000)  # over the size limit
    _write(root, "app/after.py", "def saved_beside_them():\n    return 2\n")  # the same batch: still indexed
    _eventually(lambda: "app.after.saved_beside_them" in _names(ws, "saved beside them"))

    def skipped() -> dict[str, str]:
        return {s["path"]: s["reason"] for s in ws.status()["skipped"]}

    _eventually(lambda: skipped().get("app/caf\ufffd.py") == "not_utf8" and "app/big.py" in skipped())
    os.remove(bad)
    (root / "app" / "big.py").unlink()
    _eventually(lambda: not {"app/caf\ufffd.py", "app/big.py"} & set(skipped()))
    with open(bad, "wb") as f:  # and a full pass (a command's reconciliation) says the same
        f.write(b"def odd():\n    return 1\n")
    ws.index()
    assert skipped().get("app/caf\ufffd.py") == "not_utf8"


def test_changes_lost_by_an_overflowing_kernel_queue_are_found_by_a_full_pass(tmp_path):
    """A watcher that falls behind (stopped here with SIGSTOP) loses events once inotify's queue is full;
    the pass after the overflow must still bring every file in."""

    queue = int(Path("/proc/sys/fs/inotify/max_queued_events").read_text())
    root, index_dir = tmp_path / "ws", tmp_path / "idx"
    _write(root, "pk/a.py", "def a():\n    pass\n")
    watch = _watch_process(root, index_dir)
    try:
        _eventually(lambda: (index_dir / "index.lock").exists() and watch.poll() is None, timeout=30)
        time.sleep(2)  # its observer is up (the first pass is one file)
        watch.send_signal(signal.SIGSTOP)
        files = queue * 3 // 4  # a file's writes are two or three events: well over the queue
        for i in range(files):
            (root / "pk" / f"f{i}.py").write_text(f"def lost_{i}():\n    pass\n")
        watch.send_signal(signal.SIGCONT)
        with Workspace(root, index_dir=index_dir) as reader:  # another process's view, without a pass of its own
            _eventually(lambda: reader.reader().execute("SELECT count(*) FROM files").fetchone()[0] == files + 1,
                        timeout=90)
    finally:
        watch.send_signal(signal.SIGCONT)
        watch.send_signal(signal.SIGINT)
        _, err = watch.communicate(timeout=30)
    assert "dropped change events" in err  # the overflow did happen
    assert "(a full pass: ignore rules changed or events were lost)" in err  # and the watch line says why


def test_a_symlinked_file_is_skipped_live_as_a_full_pass_skips_it(live, tmp_path):
    root, ws, _ = live
    outside = tmp_path / "outside"
    _write(outside, "secret.py", "def outside_secret_six():\n    return 6\n")
    (root / "app" / "link_out.py").symlink_to(outside / "secret.py")
    (root / "app" / "link_in.py").symlink_to(root / "app" / "core.py")
    _write(root, "app/marker.py", "def marker_after_links():\n    return 1\n")  # a file of the same batch, indexed

    def skipped() -> dict[str, str]:
        return {s["path"]: s["detail"] for s in ws.status()["skipped"]}

    _eventually(lambda: "app.marker.marker_after_links" in _names(ws, "marker after links"))
    _eventually(lambda: {"app/link_out.py", "app/link_in.py"} <= set(skipped()))
    assert not _names(ws, "outside secret six") & {"app.link_out.outside_secret_six"}
    assert "app.link_in.compute_total" not in _names(ws, "compute total")  # no copy of core.py
    live_skips = skipped()
    ws.index()  # a full pass says the same
    assert skipped() == live_skips


def test_watch_stops_with_one_line_when_its_index_folder_is_deleted(tmp_path):
    import shutil

    root, index_dir = tmp_path / "ws", tmp_path / "idx"
    _write(root, "a.py", "def a():\n    pass\n")
    watch = _watch_process(root, index_dir)
    try:
        _eventually(lambda: (index_dir / "index.db").exists(), timeout=30)
        time.sleep(1.5)  # its observer is up
        shutil.rmtree(index_dir)
        _write(root, "b.py", "def b():\n    pass\n")
        code = watch.wait(timeout=30)
    finally:
        if watch.poll() is None:
            watch.kill()
    err = watch.stderr.read()
    assert code == 2 and "stopped watching: the index folder" in err and "Traceback" not in err, err
    assert err.count("the index folder") == 1, err  # the command's line, not the watcher's log line again


def test_watch_embeds_what_it_indexes_so_the_next_search_does_not_wait(tmp_path):
    pytest.importorskip("wordllama")
    root, index_dir = tmp_path / "ws", tmp_path / "idx"
    _write(root, "a.py", "def first_function():\n    return 1\n")
    watch = _watch_process(root, index_dir, embedder="wordllama")

    def embedded() -> tuple[int, int]:
        with Workspace(root, index_dir=index_dir) as reader:
            progress = stored_progress(reader.reader())
            return (progress["embedded"], progress["total"]) if progress else (0, -1)

    try:
        _eventually(lambda: embedded() == (2, 2), timeout=60)  # the module and its function
        _write(root, "b.py", "def saved_while_watched():\n    return 2\n")
        _eventually(lambda: embedded() == (4, 4), timeout=60)
    finally:
        watch.send_signal(signal.SIGINT)
        watch.communicate(timeout=30)
