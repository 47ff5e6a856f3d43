"""Shared fixtures for engine tests: write a source tree, open real workspaces, snapshot a graph."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from indexer.workspace import Workspace

#: Confidences are compared rounded, so two indexes built by the same code compare equal.
CONFIDENCE_DIGITS = 4

NodeKey = tuple[str | None, str, str, int, int]  # (path, kind, qualname, start_line, end_line)
EdgeKey = tuple[tuple[str | None, str, str], str, tuple[str | None, str, str], float]


def git(root: Path, *args: str) -> str:
    """``git -C root ARGS`` with a test identity (commits need one); its stdout, failing on any error."""
    done = subprocess.run(["git", "-C", str(root), "-c", "user.name=t", "-c", "user.email=t@t", *args],
                          check=True, capture_output=True, text=True)
    return done.stdout


def wait_until(pred: Callable[[], bool], timeout: float = 10.0) -> bool:
    """Poll a condition owned by another thread (a watcher's, a server's); True once it holds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.01)
    return pred()


def write_tree(root: Path, files: dict[str, str | bytes]) -> Path:
    """Write ``{relpath: source}`` under ``root`` (folders created as needed); returns ``root``."""
    for rel, source in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(source, bytes):
            path.write_bytes(source)
        else:
            path.write_text(source, encoding="utf-8")
    return root


def graphs_after(tmp_path: Path, start: dict[str, str], edits: list[dict[str, str | None]], *,
                 watcher: bool = False) -> tuple[tuple[list, list], tuple[list, list]]:
    """(incremental graph, fresh graph) after applying ``edits`` one index pass at a time (None deletes): each
    pass a full walk, or with ``watcher`` a pass over the edit's paths only, as the watcher makes."""
    root = tmp_path / "ws"
    write_tree(root, start)
    with Workspace(root, index_dir=tmp_path / "live") as ws:
        ws.index()
        for edit in edits:
            for path, text in edit.items():
                if text is None:
                    (root / path).unlink()
                else:
                    write_tree(root, {path: text})
            if watcher:
                ws.index(paths=list(edit))
            else:
                ws.index()
        live = graph_of(ws)
    with Workspace(root, index_dir=tmp_path / "fresh") as fresh:
        fresh.index()
        return live, graph_of(fresh)


def graph_of(ws: Workspace) -> tuple[list[NodeKey], list[EdgeKey]]:
    """Nodes and edges of a workspace's index keyed by path, kind and name, never by id (ids differ per index)."""
    conn = ws.reader()
    keys: dict[int, tuple[str | None, str, str]] = {}
    nodes: list[NodeKey] = []
    for node_id, path, kind, qualname, start, end in conn.execute(
            "SELECT n.id, f.path, n.kind, n.qualname, n.start_line, n.end_line "
            "FROM nodes n LEFT JOIN files f ON f.id = n.file_id"):
        keys[node_id] = (path, kind, qualname)
        nodes.append((path, kind, qualname, start, end))
    edges: list[EdgeKey] = [
        (keys[src], kind, keys[dst], round(conf, CONFIDENCE_DIGITS))
        for src, kind, dst, conf in conn.execute("SELECT src, kind, dst, confidence FROM edges")
        if src in keys and dst in keys
    ]
    return sorted(nodes, key=repr), sorted(edges, key=repr)


def integrity_problems(ws: Workspace) -> list[str]:
    """Dangling rows an index must never hold: edges to missing nodes, nodes of missing files, unused libraries."""
    conn = ws.reader()
    checks = {
        "edge with a missing src": "SELECT count(*) FROM edges e WHERE NOT EXISTS (SELECT 1 FROM nodes n WHERE n.id=e.src)",
        "edge with a missing dst": "SELECT count(*) FROM edges e WHERE NOT EXISTS (SELECT 1 FROM nodes n WHERE n.id=e.dst)",
        "node of a missing file": "SELECT count(*) FROM nodes n WHERE n.file_id IS NOT NULL "
                                  "AND NOT EXISTS (SELECT 1 FROM files f WHERE f.id=n.file_id)",
        "non-library node without a file": "SELECT count(*) FROM nodes WHERE file_id IS NULL AND kind != 'library'",
        "library node nobody uses": "SELECT count(*) FROM nodes n WHERE n.kind='library' "
                                    "AND NOT EXISTS (SELECT 1 FROM edges e WHERE e.dst=n.id)",
        "file without its module node": "SELECT count(*) FROM files f WHERE NOT EXISTS "
                                        "(SELECT 1 FROM nodes n WHERE n.file_id=f.id AND n.kind='module')",
        "node whose parent is missing": "SELECT count(*) FROM nodes n WHERE n.parent_id IS NOT NULL "
                                        "AND NOT EXISTS (SELECT 1 FROM nodes p WHERE p.id=n.parent_id)",
    }
    problems = []
    for what, sql in checks.items():
        count = conn.execute(sql).fetchone()[0]
        if count:
            problems.append(f"{count} {what}")
    return problems


OpenWorkspace = Callable[..., Workspace]


@pytest.fixture
def workspace(tmp_path: Path) -> Iterator[OpenWorkspace]:
    """Open ``Workspace(root, index_dir=tmp_path/"idx")`` (or another index dir); closes every one after."""
    opened: list[Workspace] = []

    def open_workspace(root: Path, *, index_dir: Path | None = None, **kwargs) -> Workspace:
        ws = Workspace(root, index_dir=index_dir or tmp_path / "idx", **kwargs)
        opened.append(ws)
        return ws

    yield open_workspace
    for ws in opened:
        ws.close()


@pytest.fixture
def tree(tmp_path: Path) -> Callable[[dict[str, str | bytes]], Path]:
    """Write a ``{relpath: source}`` tree into ``tmp_path/"ws"`` and return that root."""
    root = tmp_path / "ws"
    root.mkdir(exist_ok=True)
    return lambda files: write_tree(root, files)
