"""Index passes on real folders: stats, unchanged files, bad files, broken databases, index locations."""

from __future__ import annotations

import os
import sqlite3
import threading
from pathlib import Path

import pytest

from conftest import graph_of, integrity_problems, write_tree
from indexer.config import DB_NAME, INDEX_DIR_ENV, default_index_dir
from indexer.loading import POOL_MIN_FILES
from indexer.types import SkipReason
from indexer.walk import read_source
from indexer.workspace import Workspace, WorkspaceError

SMALL: dict[str, str] = {
    "pkg/__init__.py": "",
    "pkg/a.py": "from pkg.b import g\n\n\ndef f():\n    return g()\n",
    "pkg/b.py": "import json\n\n\nclass K:\n    def m(self):\n        return json.dumps(1)\n\n\ndef g():\n    return K()\n",
}


# --------------------------------------------------------------------------- #
# Stats and change detection
# --------------------------------------------------------------------------- #

def test_first_pass_stats(tree, workspace):
    ws = workspace(tree(SMALL))
    stats = ws.index()
    assert (stats.files_seen, stats.files_parsed, stats.files_deleted, stats.files_unchanged) == (3, 3, 0, 0)
    assert stats.nodes_by_kind == {"module": 3, "function": 2, "class": 1, "method": 1, "library": 1}
    assert stats.edges_by_kind["contains"] == 4
    assert stats.edges_by_kind["depends_on"] >= 1  # json
    assert stats.edges_by_kind["calls"] == 2  # f -> g, g -> K
    assert stats.generation == 1
    status = ws.status()
    assert status["files"] == 3
    assert status["nodes"] == stats.nodes_by_kind
    assert status["edges"] == stats.edges_by_kind
    assert status["freshness"]["generation"] == 1


def test_second_pass_parses_nothing_and_keeps_generation(tree, workspace):
    ws = workspace(tree(SMALL))
    first = ws.index()
    second = ws.index()
    assert (second.files_parsed, second.files_unchanged, second.files_deleted) == (0, 3, 0)
    assert second.generation == first.generation
    assert (second.nodes_by_kind, second.edges_by_kind) == (first.nodes_by_kind, first.edges_by_kind)


def test_touched_file_with_same_content_is_not_reparsed(tree, workspace):
    root = tree(SMALL)
    ws = workspace(root)
    first = ws.index()
    before = graph_of(ws)
    stat = (root / "pkg/a.py").stat()
    os.utime(root / "pkg/a.py", ns=(stat.st_atime_ns, stat.st_mtime_ns + 5_000_000_000))
    second = ws.index()
    assert second.files_parsed == 0
    assert second.generation == first.generation
    assert graph_of(ws) == before
    third = ws.index()  # the new mtime was recorded: not even hashed again
    assert third.files_parsed == 0


def test_generation_increases_when_something_changed(tree, workspace):
    root = tree(SMALL)
    ws = workspace(root)
    first = ws.index()
    (root / "pkg/a.py").write_text("def f():\n    return 2\n")
    edited = ws.index()
    assert edited.files_parsed == 1 and edited.generation == first.generation + 1
    (root / "pkg/b.py").unlink()
    deleted = ws.index()
    assert deleted.files_deleted == 1 and deleted.generation == edited.generation + 1
    assert ws.status()["nodes"].get("library", 0) == 0  # json went with b.py
    assert integrity_problems(ws) == []


def test_progress_reports_phases(tree, workspace):
    ws = workspace(tree(SMALL))
    phases: list[tuple[str, int, int]] = []
    ws.index(progress=lambda phase, done, total: phases.append((phase, done, total)))
    assert {p for p, _, _ in phases} == {"walk", "parse", "resolve"}
    assert ("parse", 3, 3) in phases


# --------------------------------------------------------------------------- #
# Bad files: skipped with a reason, never a crash
# --------------------------------------------------------------------------- #

def skipped(ws: Workspace) -> dict[str, str]:
    return {s["path"]: s["reason"] for s in ws.status()["skipped"]}


def test_syntax_error_is_indexed_partially(tree, workspace):
    ws = workspace(tree({
        "broken.py": "def good():\n    return 1\n\n\ndef bad(:\n    pass\n\n\ndef also_good():\n    return 2\n",
    }))
    ws.index()
    names = {n.qualname for n in ws.nodes("broken.py:1")} | {n.qualname for n in ws.nodes("good")}
    assert "broken.good" in names
    assert ws.node("also_good").qualname == "broken.also_good"
    status = ws.status()
    assert skipped(ws) == {"broken.py": "syntax_error"}
    assert status["skipped_by_reason"] == {"syntax_error": 1}


def test_a_syntax_error_stays_listed_until_the_file_is_fixed_or_gone(tree, workspace):
    """A pass re-reads only changed files: the second pass (every command indexes first) used to drop the
    syntax error of a file it did not re-read from the skip list."""
    root = tree({"broken.py": "def bad(:\n    pass\n", "ok.py": "x = 1\n"})
    ws = workspace(root)
    ws.index()
    ws.index()
    assert skipped(ws) == {"broken.py": "syntax_error"}
    (root / "ok.py").write_text("x = 2\n")
    ws.index()
    ws.index(paths=["ok.py"])
    assert skipped(ws) == {"broken.py": "syntax_error"}
    (root / "broken.py").unlink()
    ws.index()
    assert skipped(ws) == {}


def test_fixed_syntax_error_leaves_the_skip_list(tree, workspace):
    root = tree({"broken.py": "def bad(:\n    pass\n"})
    ws = workspace(root)
    ws.index()
    assert skipped(ws) == {"broken.py": "syntax_error"}
    (root / "broken.py").write_text("def bad():\n    pass\n")
    ws.index()
    assert skipped(ws) == {}


def test_unindexable_files_are_skipped_with_their_reason(tree, workspace):
    root = tree({
        "ok.py": "def fine():\n    return 1\n",
        "latin1.py": b"# caf\xe9\ndef latin():\n    return 1\n",
        "blob.py": b"def x():\n    pass\n\x00\x01\x02",
        "huge.py": "# " + "x" * 2000 + "\ndef huge():\n    pass\n",
        "ignored.py": "def hidden():\n    pass\n",
        ".gitignore": "ignored.py\n",
    })
    os.symlink("loop_b.py", root / "loop_a.py")
    os.symlink("loop_a.py", root / "loop_b.py")
    ws = workspace(root, max_bytes=1000)
    stats = ws.index()
    assert skipped(ws) == {
        "latin1.py": "not_utf8", "blob.py": "binary", "huge.py": "too_large", "ignored.py": "ignored",
        "loop_a.py": "symlink_loop", "loop_b.py": "symlink_loop",
    }
    assert ws.status()["files"] == 1 and stats.files_parsed == 1
    assert (stats.files_seen, stats.files_unchanged) == (1, 0)  # found binary on reading: not files, not unchanged
    for name in ("latin", "x", "huge", "hidden"):
        with pytest.raises(LookupError):
            ws.nodes(name)
    details = {s["path"]: s["detail"] for s in ws.status()["skipped"]}
    assert "1000" in details["huge.py"] and details["ignored.py"] == ".gitignore"


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="named pipes are POSIX")
def test_a_named_pipe_named_like_source_is_skipped_not_waited_on(tree, workspace):
    """Opening a FIFO blocks until a writer comes: an index pass (and every command, since they index
    first) hung on one named ``pipe.py``."""
    root = tree({"ok.py": "def fine():\n    return 1\n"})
    os.mkfifo(root / "pipe.py")
    ws = workspace(root)
    done = threading.Thread(target=ws.index, daemon=True)
    done.start()
    done.join(60)
    assert not done.is_alive(), "the index pass is waiting on the named pipe"
    assert skipped(ws) == {"pipe.py": "unreadable"}
    assert read_source(root, "pipe.py").reason == SkipReason.UNREADABLE  # the workers' read does not block


def test_unreadable_file_is_skipped(tree, workspace):
    root = tree({"ok.py": "x = 1\n", "secret.py": "def secret():\n    pass\n"})
    (root / "secret.py").chmod(0)
    try:
        if os.access(root / "secret.py", os.R_OK):
            pytest.skip("running with privileges that read a mode-000 file (root)")
        ws = workspace(root)
        ws.index()
        assert skipped(ws) == {"secret.py": "unreadable"}
    finally:
        (root / "secret.py").chmod(0o644)


def test_file_that_became_bad_loses_its_nodes(tree, workspace):
    root = tree({"a.py": "def fine():\n    pass\n", "b.py": "from a import fine\n\n\ndef user():\n    fine()\n"})
    ws = workspace(root)
    ws.index()
    (root / "a.py").write_bytes(b"def fine():\n    pass\n\x00")
    ws.index()
    assert skipped(ws) == {"a.py": "binary"}
    with pytest.raises(LookupError):
        ws.nodes("a.fine")
    assert ("calls", "a.fine") not in {(l.name, l.node.qualname) for l in ws.related("b.user")}
    assert integrity_problems(ws) == []


def test_vanished_path_in_partial_pass_is_harmless(tree, workspace):
    ws = workspace(tree(SMALL))
    ws.index()
    before = graph_of(ws)
    stats = ws.index(paths=["gone.py", "pkg/gone.py"])
    assert stats.files_parsed == 0
    assert graph_of(ws) == before
    with pytest.raises(LookupError):
        ws.nodes("gone.py")


def test_file_deleted_before_read_is_dropped(tree, workspace):
    root = tree(SMALL)
    ws = workspace(root)
    ws.index()
    (root / "pkg/a.py").unlink()
    stats = ws.index(paths=["pkg/a.py"])
    assert stats.files_deleted == 1
    with pytest.raises(LookupError):
        ws.nodes("pkg.a.f")
    assert integrity_problems(ws) == []


def test_status_lists_skips_sorted_by_reason(tree, workspace):
    root = tree({"b.py": b"\x00", "a.py": b"\x00", "c.py": b"\xff\xfe"})
    ws = workspace(root)
    ws.index()
    status = ws.status()
    assert [(s["path"], s["reason"]) for s in status["skipped"]] == [
        ("a.py", "binary"), ("b.py", "binary"), ("c.py", "not_utf8")]
    assert status["skipped_by_reason"] == {"binary": 2, "not_utf8": 1}


# --------------------------------------------------------------------------- #
# The database file
# --------------------------------------------------------------------------- #

def _foreign_sqlite(path: Path) -> None:
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE foo (x INTEGER)")
    conn.execute("INSERT INTO foo VALUES (1)")
    conn.commit()
    conn.close()


def test_a_file_with_a_coding_comment_is_indexed_in_its_encoding(tree, workspace):
    root = tree({"menu.py": "# -*- coding: latin-1 -*-\n\n\ndef caf\u00e9_au_lait():\n    return 'cr\u00e8me'\n"})
    (root / "menu.py").write_bytes((root / "menu.py").read_text(encoding="utf-8").encode("latin-1"))
    ws = workspace(root)
    ws.index()
    [node] = ws.nodes("caf\u00e9_au_lait")
    assert (node.path, node.start_line) == ("menu.py", 4)
    assert "return 'cr\u00e8me'" in ws.context(focus="menu.py:4", budget=500).text


@pytest.mark.parametrize("spoil", [
    lambda p: p.write_bytes(b"this is not a database at all " * 200),
    _foreign_sqlite,
], ids=["garbage", "foreign-sqlite"])
def test_unusable_database_is_moved_aside_and_rebuilt(tree, workspace, tmp_path, spoil, caplog):
    root = tree(SMALL)
    index_dir = tmp_path / "idx"
    index_dir.mkdir()
    spoil(index_dir / DB_NAME)
    ws = workspace(root, index_dir=index_dir)
    assert ws.rebuilt is True
    [moved] = index_dir.glob(f"{DB_NAME}.broken-*")
    # the warning says where the task logs went: they were in the file moved aside
    assert f"moved aside to {moved} (with its task event logs" in caplog.text
    assert ws.index().files_parsed == 3
    assert ws.node("pkg.a.f").path == "pkg/a.py"


def test_healthy_database_is_reused(tree, workspace, tmp_path):
    root = tree(SMALL)
    first = Workspace(root, index_dir=tmp_path / "idx")
    first.index()
    first.close()
    ws = workspace(root)
    assert ws.rebuilt is False
    assert ws.index().files_parsed == 0
    assert not list((tmp_path / "idx").glob("*.broken-*"))


def test_index_made_before_the_library_index_gets_it_on_open_and_stays_usable(tree, workspace, tmp_path):
    root = tree(SMALL)
    first = Workspace(root, index_dir=tmp_path / "idx")
    first.index()
    first.close()
    conn = sqlite3.connect(tmp_path / "idx" / DB_NAME)
    conn.execute("DROP INDEX nodes_library")  # as an index made before the index was added
    conn.commit()
    conn.close()
    ws = workspace(root)
    assert ws.rebuilt is False
    names = {r[0] for r in ws.reader().execute("SELECT name FROM sqlite_master WHERE type='index'")}
    assert "nodes_library" in names
    write_tree(root, {"pkg/b.py": "import os\n\n\ndef g():\n    return os.sep\n"})  # json goes, os comes
    ws.index(paths=["pkg/b.py"])
    libraries = {r[0] for r in ws.reader().execute("SELECT qualname FROM nodes WHERE kind='library'")}
    assert libraries == {"os"}
    assert integrity_problems(ws) == []


def test_an_index_built_under_earlier_graph_rules_is_reparsed_once_and_keeps_its_task_log(tree, workspace,
                                                                                             tmp_path):
    root = tree(SMALL)
    first = Workspace(root, index_dir=tmp_path / "idx")
    first.index()
    first.record("t1", "task_started", {"title": "fix g"})
    first.close()
    conn = sqlite3.connect(tmp_path / "idx" / DB_NAME)
    conn.execute("DELETE FROM meta WHERE key='graph_rules'")  # as a release before the rules were versioned
    conn.execute("DELETE FROM edges WHERE kind='calls'")  # links the earlier rules made differently
    conn.commit()
    conn.close()
    ws = workspace(root)
    assert ws.rebuilt is False
    stats = ws.index()
    assert stats.files_parsed == 3 and stats.edges_by_kind["calls"] == 2
    fresh = Workspace(root, index_dir=tmp_path / "fresh")
    fresh.index()
    assert graph_of(ws) == graph_of(fresh)
    fresh.close()
    assert ws.index().files_parsed == 0  # once
    assert ws.task_state("t1").title == "fix g"


def test_index_of_another_workspace_is_refused(tmp_path, workspace):
    one = write_tree(tmp_path / "one", SMALL)
    two = write_tree(tmp_path / "two", SMALL)
    workspace(one, index_dir=tmp_path / "shared").index()
    with pytest.raises(WorkspaceError, match="belongs to"):
        Workspace(two, index_dir=tmp_path / "shared")


def test_missing_root_is_refused(tmp_path):
    with pytest.raises(WorkspaceError, match="not a folder"):
        Workspace(tmp_path / "nowhere", index_dir=tmp_path / "idx")


def test_default_index_dir_honours_env_and_is_keyed_by_root(tmp_path, monkeypatch):
    monkeypatch.setenv(INDEX_DIR_ENV, str(tmp_path / "cache"))
    one = write_tree(tmp_path / "one" / "app", SMALL)
    two = write_tree(tmp_path / "two" / "app", SMALL)  # same folder name, different path
    with Workspace(one) as a, Workspace(two) as b:
        a.index()
        b.index()
        assert a.index_dir.parent == b.index_dir.parent == tmp_path / "cache"
        assert a.index_dir != b.index_dir
        assert a.db_path.is_file() and b.db_path.is_file()
    assert default_index_dir(one) == default_index_dir(one)
    assert len(list((tmp_path / "cache").iterdir())) == 2


def test_index_dir_inside_workspace_is_not_indexed(tmp_path, workspace):
    root = write_tree(tmp_path / "ws", SMALL)
    write_tree(root / ".idx", {"leftover.py": "def leftover():\n    pass\n"})
    ws = workspace(root, index_dir=root / ".idx")
    ws.index()
    assert ws.status()["files"] == 3
    with pytest.raises(LookupError):
        ws.nodes("leftover")


# --------------------------------------------------------------------------- #
# Parallel parse
# --------------------------------------------------------------------------- #

def test_pool_workers_import_no_sqlite_or_vectors():
    """The forkserver imports the worker module before the first file is parsed, while the writer waits."""
    import subprocess
    import sys

    probe = "import sys, indexer.loading; print(sorted(m for m in ('sqlite_vec', 'numpy', 'indexer.sqlite') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_process_pool_builds_the_same_graph(tmp_path):
    count = POOL_MIN_FILES + 4
    files = {"lib/__init__.py": ""}
    for i in range(count):
        callee = f"from lib.m{i + 1} import f{i + 1}\n\n\n" if i + 1 < count else ""
        body = f"    return f{i + 1}()\n" if i + 1 < count else "    return 0\n"
        files[f"lib/m{i}.py"] = f"{callee}class C{i}:\n    pass\n\n\ndef f{i}():\n{body}"
    root = write_tree(tmp_path / "ws", files)
    with Workspace(root, index_dir=tmp_path / "pool", workers=2) as pooled, \
            Workspace(root, index_dir=tmp_path / "serial", workers=1) as serial:
        pooled_stats = pooled.index()
        serial.index()
        assert pooled_stats.files_parsed == count + 1
        assert graph_of(pooled) == graph_of(serial)
        assert ("calls", "lib.m1.f1") in {(l.name, l.node.qualname) for l in pooled.related("lib.m0.f0")}


# --------------------------------------------------------------------------- #
# The garbage collector a pass pauses
# --------------------------------------------------------------------------- #

def test_a_pass_gives_the_garbage_collector_back_as_it_found_it(tmp_path, monkeypatch):
    import gc

    from indexer import indexing

    root = write_tree(tmp_path / "ws", {"a.py": "def f():\n    return 1\n", "b.py": "from a import f\n\n\nf()\n"})
    seen_during: list[bool] = []
    real_resolve = indexing.IndexPass._resolve

    def resolve(self, *args, **kwargs):
        seen_during.append(gc.isenabled())
        return real_resolve(self, *args, **kwargs)

    monkeypatch.setattr(indexing.IndexPass, "_resolve", resolve)
    assert gc.isenabled()
    with Workspace(root, index_dir=tmp_path / "idx") as ws:
        ws.index()
        assert seen_during == [False] and gc.isenabled()  # paused while writing, back on after
        gc.disable()  # a caller that runs without it keeps it off
        try:
            (root / "a.py").write_text("def f():\n    return 2\n")
            ws.index()
            assert not gc.isenabled()
        finally:
            gc.enable()

        def broken(self, *args, **kwargs):
            raise RuntimeError("writer bug")

        monkeypatch.setattr(indexing.IndexPass, "_resolve", broken)
        (root / "a.py").write_text("def f():\n    return 3\n")
        with pytest.raises(RuntimeError, match="writer bug"):
            ws.index()
        assert gc.isenabled()  # a failed pass gives it back too


# --------------------------------------------------------------------------- #
# The FTS segments a large pass leaves
# --------------------------------------------------------------------------- #

def _fts_merge_work_left(db_path: Path) -> int:
    """Rows one incremental FTS5 merge step would change (fewer than 2: the index is one segment)."""
    from indexer import sqlite as store_sqlite  # the project's SQLite: the stdlib's may predate contentless_delete

    conn = store_sqlite.connect(db_path, vectors=False)
    try:
        before = conn.total_changes
        conn.execute("INSERT INTO fts(fts, rank) VALUES('merge', -250)")
        changed = conn.total_changes - before
        conn.rollback()
        return changed
    finally:
        conn.close()


def _many_files(count: int) -> dict[str, str]:
    return {f"pkg/mod{i}.py": "".join(f"def handler_{i}_{j}(value_{j}, other_{i}):\n    return helper_{j}_{i}(value_{j})\n\n"
                                      for j in range(40)) for i in range(count)}


@pytest.mark.parametrize("merged", [True, False])
def test_a_large_pass_leaves_one_fts_segment(tmp_path, monkeypatch, merged):
    from indexer import indexing

    if not merged:  # a large pass with the merge switched off: the segments the merge saves later writes from
        monkeypatch.setattr(indexing, "MERGE_FTS_FILES", 10**6)
    root = write_tree(tmp_path / "ws", _many_files(indexing.MERGE_FTS_FILES if merged else 240))
    with Workspace(root, index_dir=tmp_path / "idx") as ws:
        ws.index()
        hits = [h.node.qualname for h in ws.search("handler_7_3", top_k=3)]
    # close() waited for the background merge
    left = _fts_merge_work_left(tmp_path / "idx" / DB_NAME)
    assert (left < 2) if merged else (left >= 2)
    assert hits[0] == "mod7.handler_7_3"  # the merge changed no answer
