"""A process killed in the middle of an index pass (SIGKILL: an editor stopping its server, the OOM killer)
loses that pass only. The index opens as the last finished pass left it, the next pass ends where a fresh
one would, and none of the pass's worker processes outlives it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from conftest import graph_of, integrity_problems, wait_until, write_tree
from indexer.workspace import Workspace

pytestmark = pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="finds processes in /proc")

#: Enough files for the parse pool and for resolution in forked children.
FILES = 300

#: Indexes ROOT into INDEX_DIR and kills itself once PHASE has reached SHARE of its files.
KILLER = """
import os, signal, sys
from indexer.workspace import Workspace

def main(root, index_dir, phase, share):
    def progress(p, done, total):
        if p == phase and 0 < done < total and done >= total * float(share):
            print(f"killed at {p} {done}/{total}", flush=True)
            os.kill(os.getpid(), signal.SIGKILL)
    Workspace(root, index_dir=index_dir).index(progress=progress)

if __name__ == "__main__":
    main(*sys.argv[1:])
"""


def modules(n: int, flavour: str = "") -> dict[str, str]:
    """``n`` modules in 7 packages, each importing and calling a helper of another one."""
    files: dict[str, str] = {f"pkg{k}/__init__.py": "" for k in range(7)}
    for i in range(n):
        j = (i * 31 + 5) % n
        body = [f"from pkg{j % 7}.mod{j} import helper_{j}{flavour}", "", "",
                f"class Thing{i}:", "    def run(self, x):", f"        return helper_{j}{flavour}(x) + {i}", "", "",
                f"def helper_{i}{flavour}(x):", f"    return Thing{i}().run(x) if x else {i}", ""]
        body += [f"def extra_{i}_{k}(a, b):\n    return helper_{i}{flavour}(a) + b\n" for k in range(8)]
        files[f"pkg{i % 7}/mod{i}.py"] = "\n".join(body)
    return files


def processes_marked(mark: str) -> list[int]:
    """Pids of live processes whose environment carries ``mark`` (the killed one's children inherit it)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if mark.encode() in (entry / "environ").read_bytes():
                pids.append(int(entry.name))
        except OSError:  # gone meanwhile, or not ours
            continue
    return pids


def kill_an_index_pass(tmp_path: Path, root: Path, index_dir: Path, phase: str, share: float) -> str:
    """Run an index pass in a child process that SIGKILLs itself mid-``phase``; wait until its workers are gone."""
    script = tmp_path / "killer.py"
    script.write_text(KILLER)
    mark = f"CODEAHEAD_TEST_MARK={uuid.uuid4().hex}"
    # TMPDIR: the killed process cannot remove its fork server's socket folder, so it lands in tmp_path.
    env = {**os.environ, mark.split("=")[0]: mark.split("=")[1], "TMPDIR": str(tmp_path)}
    done = subprocess.run([sys.executable, str(script), str(root), str(index_dir), phase, str(share)],
                          env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == -signal.SIGKILL, done.stderr
    assert done.stdout.startswith(f"killed at {phase} ")
    # Parse workers check for their parent twice a second; resolution children see their pipe break.
    assert wait_until(lambda: not processes_marked(mark), timeout=15), processes_marked(mark)
    return done.stdout


def fresh_graph(root: Path, index_dir: Path):
    with Workspace(root, index_dir=index_dir) as ws:
        ws.index()
        return graph_of(ws)


@pytest.mark.parametrize("phase", ["parse", "resolve"])
def test_a_cold_pass_killed_midway_leaves_an_empty_index_and_no_process(tmp_path, phase):
    root = write_tree(tmp_path / "ws", modules(FILES))
    index_dir = tmp_path / "idx"
    kill_an_index_pass(tmp_path, root, index_dir, phase, 0.5)
    with Workspace(root, index_dir=index_dir) as ws:
        assert ws.status()["files"] == 0  # the pass was one transaction: none of it stayed
        stats = ws.index()
        assert stats.files_parsed == FILES + 7
        assert integrity_problems(ws) == []
        assert graph_of(ws) == fresh_graph(root, tmp_path / "fresh")


def test_an_incremental_pass_killed_midway_keeps_the_last_graph(tmp_path):
    root = write_tree(tmp_path / "ws", modules(FILES))
    index_dir = tmp_path / "idx"
    with Workspace(root, index_dir=index_dir) as ws:
        ws.index()
        before, generation = graph_of(ws), ws.freshness()["generation"]
    write_tree(root, modules(FILES, flavour="_v2"))  # every helper renamed: every file re-parsed and re-resolved
    kill_an_index_pass(tmp_path, root, index_dir, "resolve", 0.5)
    with Workspace(root, index_dir=index_dir) as ws:
        assert graph_of(ws) == before
        assert ws.freshness()["generation"] == generation
        assert not any("_v2" in h.node.qualname for h in ws.search("helper_3_v2", top_k=10))
        ws.index()
        assert integrity_problems(ws) == []
        assert graph_of(ws) == fresh_graph(root, tmp_path / "fresh")
        assert ws.search("helper_3_v2", top_k=1)[0].node.qualname == "pkg3.mod3.helper_3_v2"
