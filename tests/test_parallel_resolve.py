"""Forked link resolution: the same answers, in the same order, as resolving in one process."""

from __future__ import annotations

import os

import pytest

from conftest import graph_of, write_tree
from indexer import indexing
from indexer.graph import parallel
from indexer.graph.resolve import Resolver
from indexer.workspace import Workspace

pytestmark = pytest.mark.skipif(not parallel.can_fork(), reason="forked resolution runs on Linux only")


def _files(count: int) -> dict[str, str]:
    """Modules that call, subclass and import each other, a test file and a library import."""
    files = {"pkg/__init__.py": "from pkg.m0 import *\n", "tests/test_m.py": ""}
    for i in range(count):
        nxt = (i + 1) % count
        base = f"C{nxt}" if nxt else "object"  # a chain of subclasses, no cycle
        files[f"pkg/m{i}.py"] = (
            f"import json\nfrom pkg.m{nxt} import f{nxt}, C{nxt}\n\n\n"
            f"class C{i}({base}):\n    def run(self):\n        return self.helper()\n\n"
            f"    def helper(self):\n        return json.dumps(f{nxt}())\n\n\n"
            f"class D{i}(C{i}):\n    def run(self):\n        return super().run()\n\n\n"
            f"def f{i}():\n    return C{i}().run()\n"
        )
        files["tests/test_m.py"] += f"from pkg.m{i} import f{i}\n\n\ndef test_f{i}():\n    assert f{i}()\n\n\n"
    return files


def _deps(ws: Workspace) -> set[tuple[str, str]]:
    return set(ws.reader().execute("SELECT d.name, f.path FROM deps d JOIN files f ON f.id = d.file_id"))


def test_forked_cold_index_equals_one_process(tmp_path, monkeypatch):
    root = write_tree(tmp_path / "ws", _files(40))
    monkeypatch.setattr(indexing, "_PARALLEL_RESOLVE_MIN", 2)
    forked_calls = []
    real = indexing.links_forked
    monkeypatch.setattr(indexing, "links_forked", lambda *a: forked_calls.append(1) or real(*a))
    with Workspace(root, index_dir=tmp_path / "forked", workers=2) as forked:
        stats = forked.index()
        forked_graph, forked_deps = graph_of(forked), _deps(forked)
        # a pass into an empty index counts what it wrote instead of counting the tables: the same figures
        tables = {t: dict(forked.reader().execute(f"SELECT kind, count(*) FROM {t} GROUP BY kind"))
                  for t in ("nodes", "edges")}
        assert (stats.nodes_by_kind, stats.edges_by_kind) == (tables["nodes"], tables["edges"])
        assert {"library", "test", "function", "module"} <= set(stats.nodes_by_kind)
        assert {"contains", "calls", "imports", "tests", "depends_on"} <= set(stats.edges_by_kind)
        libraries = forked.reader().execute("SELECT id, qualname FROM nodes WHERE kind='library'").fetchall()
    assert forked_calls, "the forked path did not run"
    monkeypatch.setattr(indexing, "_PARALLEL_RESOLVE_MIN", 10**9)
    with Workspace(root, index_dir=tmp_path / "serial", workers=2) as serial:
        serial.index()
        assert graph_of(serial) == forked_graph
        assert _deps(serial) == forked_deps
        # new library nodes get their ids in file order either way
        assert serial.reader().execute("SELECT id, qualname FROM nodes WHERE kind='library'").fetchall() == libraries


def _symbols_and_facts(tmp_path, count: int):
    root = write_tree(tmp_path / "ws", _files(count))
    ws = Workspace(root, index_dir=tmp_path / "index", workers=1)
    ws.index()
    stored = ws._pass
    symbols = stored._symbols_table()
    ids = [r[0] for r in ws.reader().execute("SELECT id FROM files ORDER BY id")]
    return ws, symbols, stored._stored_facts(ids)


def test_links_forked_match_links_here_in_order(tmp_path):
    ws, symbols, facts = _symbols_and_facts(tmp_path, 3 * parallel.CHUNK_FILES)
    with ws:
        here = list(parallel.links_here(Resolver(symbols), list(facts), {}))
        forked = list(parallel.links_forked(symbols, list(facts), 3, {}))
    assert [link[0] for link in forked] == [f.file_id for f in facts]
    assert forked == here
    assert any(libraries for _, _, libraries, _ in here), "no library edge was resolved"
    assert all(isinstance(row[2], int) for _, code, _, _ in here for row in code)


def test_a_failing_child_fails_the_pass_and_is_reaped(tmp_path, monkeypatch):
    ws, symbols, facts = _symbols_and_facts(tmp_path, 4)
    children: list[int] = []
    real_fork = os.fork

    def fork() -> int:
        pid = real_fork()
        if pid:
            children.append(pid)
        return pid

    def broken(*args):  # runs in the child
        raise ValueError("resolver bug")

    monkeypatch.setattr(parallel.os, "fork", fork)
    monkeypatch.setattr(parallel, "links_of", broken)
    with ws, pytest.raises(RuntimeError, match="died"):
        list(parallel.links_forked(symbols, list(facts), 2, {}))
    for pid in children:
        with pytest.raises(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)  # already reaped


def test_forked_incremental_pass_equals_fresh_index(tmp_path, monkeypatch):
    files = _files(40)
    root = write_tree(tmp_path / "ws", files)
    monkeypatch.setattr(indexing, "_PARALLEL_RESOLVE_MIN", 2)
    with Workspace(root, index_dir=tmp_path / "live", workers=2) as live:
        live.index()
        forked: list[int] = []
        real = indexing.links_forked
        monkeypatch.setattr(indexing, "links_forked", lambda symbols, files, *rest: forked.append(len(files))
                            or real(symbols, files, *rest))
        # m5.f5 goes away and C5 loses its base: every file that called, imported or inherited it re-resolves
        (root / "pkg/m5.py").write_text(files["pkg/m5.py"].replace("def f5", "def g5").replace("(C6)", "(object)"))
        stats = live.index(paths=["pkg/m5.py"])
        assert stats.files_parsed == 1
        assert forked and forked[0] > 1, "the dependents were not resolved by forked children"
        live_graph, live_deps = graph_of(live), _deps(live)
    monkeypatch.setattr(indexing, "_PARALLEL_RESOLVE_MIN", 10**9)
    with Workspace(root, index_dir=tmp_path / "fresh", workers=1) as fresh:
        fresh.index()
        assert graph_of(fresh) == live_graph
        assert _deps(fresh) == live_deps
