"""The commit-history ranking signal: mined from a real git repository, stored in the index, used by search."""

from __future__ import annotations

import json
import math
import queue
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from conftest import git, wait_until, write_tree
from indexer.search import history, lexical
from indexer.search.rerank import HISTORY_SHARE
from indexer.terms import terms_of

# Two modules whose code ends up the same (the fix makes beta alpha's twin): only history tells them apart.
FILES = {
    "app/alpha.py": "def parse_header(value):\n    return value.split(';')\n",
    "app/beta.py": "def parse_header(value):\n    return value.split(',')\n",
    "app/other.py": "def unrelated():\n    return 1\n",
}
# An issue report (a search of a few words gets no history: see test_a_search_gets_no_history).
QUERY = "The server crashes when parsing a quoted header value that contains a semicolon in the middle"


def commit(root: Path, files: dict[str, str], message: str) -> str:
    write_tree(root, files)
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", message)
    return git(root, "rev-parse", "HEAD").strip()


@pytest.fixture
def repo(tree) -> Path:
    root = tree(FILES)
    git(root, "init", "-q")
    commit(root, {}, "Initial import")
    commit(root, {"app/beta.py": FILES["app/alpha.py"], "tests/test_beta.py": "def test_b():\n    pass\n"},
           "Fixed crash parsing a quoted header value containing a semicolon")
    commit(root, {"app/other.py": FILES["app/other.py"] + "# tidy\n", "README.txt": "docs\n"},
           "Tidied the unrelated helper")
    return root


def paths(ws, query: str) -> list[str]:
    return [h.node.path for h in ws.search(query, top_k=10) if h.node.kind == "function"]


def test_mining_stores_the_commits_once_per_head(repo, workspace):
    ws = workspace(repo)
    ws.index()
    assert ws.status()["history"] is None
    assert ws.mine_history() == 3
    head = git(repo, "rev-parse", "HEAD").strip()
    assert ws.status()["history"] == {"head": head, "commits": 3}
    assert ws.mine_history() == 0  # the same head: nothing read again

    new_head = commit(repo, {"app/alpha.py": FILES["app/alpha.py"] + "# x\n"}, "Sped up alpha")
    assert ws.mine_history() == 4  # a new head replaces the stored history
    assert ws.status()["history"] == {"head": new_head, "commits": 4}


def test_the_watcher_follows_a_commit_that_changes_no_indexed_file(repo, workspace):
    """Committing saved work writes no file the index reads; the watcher still sees the branch move and
    mines the new head for the ranking, and for the predictor's co-change once it is loaded."""
    ws = workspace(repo)
    ws.index()
    ws.mine_history()
    predictor = ws.predictor
    predictor.mine_git(repo)
    ws.start_watching()
    generation = ws.freshness()["generation"]
    write_tree(repo, {"app/alpha.py": FILES["app/alpha.py"] + "# faster\n",
                      "app/other.py": FILES["app/other.py"] + "# faster too\n"})
    assert wait_until(lambda: ws.freshness()["generation"] > generation)
    assert ws.watcher.wait_idle(10)
    generation = ws.freshness()["generation"]
    git(repo, "commit", "-q", "-am", "Sped up alpha")
    head = git(repo, "rev-parse", "HEAD").strip()
    assert wait_until(lambda: ws.status()["history"]["head"] == head)
    assert ws.status()["history"]["commits"] == 4
    assert wait_until(lambda: predictor.mined_head == head)
    assert "app/other.py" in predictor.cochange.pairs.get("app/alpha.py", {})
    assert ws.freshness()["generation"] == generation  # nothing was re-indexed for it


def test_a_workspace_inside_a_larger_repository_follows_its_commits(repo, workspace):
    """A workspace that is a folder of a repository has git's HEAD outside its root; the watcher still sees
    a commit move it, and the history mined is the folder's, with its own paths."""
    ws = workspace(repo / "app")
    ws.index()
    assert ws.mine_history() == 3
    ws.start_watching()
    write_tree(repo, {"app/other.py": FILES["app/other.py"] + "# faster\n"})
    assert wait_until(lambda: ws.watcher.stats()["batches"] >= 1)
    git(repo, "commit", "-q", "-am", "Sped up the other helper")
    head = git(repo, "rev-parse", "HEAD").strip()
    assert wait_until(lambda: (ws.status()["history"] or {}).get("head") == head)
    assert ws.status()["history"]["commits"] == 4
    assert history.file_scores(ws.reader(), "sped up the other helper quickly please") == {"other.py": 1.0}


def test_history_survives_a_reopen(repo, workspace, tmp_path):
    ws = workspace(repo, index_dir=tmp_path / "reopen")
    ws.index()
    ws.mine_history()
    ws.close()
    again = workspace(repo, index_dir=tmp_path / "reopen")
    assert again.status()["history"]["commits"] == 3
    assert again.mine_history() == 0


def test_outside_git_there_is_no_history(tree, workspace):
    ws = workspace(tree(FILES))
    ws.index()
    assert ws.mine_history() is None
    assert ws.status()["history"] is None
    assert history.file_scores(ws.reader(), QUERY) == {}


def test_an_unknown_head_is_refused_quietly(repo, workspace):
    ws = workspace(repo)
    assert ws.mine_history(head="no-such-branch") is None


def test_file_scores_credit_the_code_a_matching_commit_changed(repo, workspace):
    ws = workspace(repo)
    ws.index()
    ws.mine_history()
    scores = history.file_scores(ws.reader(), QUERY)
    assert scores["app/beta.py"] == 1.0
    assert "tests/test_beta.py" not in scores  # a test file is not where the fault sits
    assert "app/alpha.py" not in scores  # only in the initial import, whose message says nothing of headers
    assert "README.txt" not in scores  # only Python files are mined


def test_large_commits_are_not_evidence(repo, workspace):
    commit(repo, {f"bulk/m{i}.py": f"# header {i}\n" for i in range(history.MAX_FILES + 1)},
           "Reformatted every quoted header value parser")
    ws = workspace(repo)
    ws.index()
    assert ws.mine_history() == 3  # the initial import, the fix, the tidy: not the sweep
    assert not any(p.startswith("bulk/") for p in history.file_scores(ws.reader(), QUERY))


def test_history_lifts_a_file_in_search_and_changes_the_cached_answer(repo, workspace):
    ws = workspace(repo)
    ws.index()
    before = paths(ws, QUERY)
    assert set(before[:2]) == {"app/alpha.py", "app/beta.py"}
    scores = {h.node.path: h.score for h in ws.search(QUERY, top_k=10) if h.node.kind == "function"}
    assert scores["app/alpha.py"] == pytest.approx(scores["app/beta.py"])  # the code alone cannot tell
    ws.mine_history()
    after = {h.node.path: h.score for h in ws.search(QUERY, top_k=10) if h.node.kind == "function"}
    assert after["app/beta.py"] > after["app/alpha.py"]  # not the cached answer of before the mining
    assert after["app/beta.py"] <= after["app/alpha.py"] * (1 + 1e-9 + HISTORY_SHARE)


def test_a_search_gets_no_history(repo, workspace):
    ws = workspace(repo)
    ws.index()
    ws.mine_history()
    search = "quoted header value semicolon"
    assert history.file_scores(ws.reader(), search)["app/beta.py"] == 1.0  # the commits would say beta ...
    scores = {h.node.path: h.score for h in ws.search(search, top_k=10) if h.node.kind == "function"}
    assert scores["app/alpha.py"] == pytest.approx(scores["app/beta.py"])  # ... but a search names code


def test_in_memory_bm25_equals_fts5(tmp_path, repo, workspace):
    messages = ["Fixed header parsing", "Fixed a crash in the parser of headers and values", "values values",
                "Refactored the cookie jar", "Made quoting of header values strict", "header"]
    for i, message in enumerate(messages):
        commit(repo, {f"app/m{i}.py": f"x = {i}\n"}, message)
    ws = workspace(repo)
    ws.index()
    ws.mine_history()
    conn = ws.reader()
    index = history._commit_index(conn, history.mined_head(conn))
    for query in ("header value", "crash parser", "cookie quoting values", "nothing matches zzz", QUERY):
        words = list(dict.fromkeys(w for w in terms_of(query) if len(w) > 2))
        match = " OR ".join(f'"{w}"' for w in words)
        expected = conn.execute("SELECT rowid, -bm25(commit_fts) FROM commit_fts WHERE commit_fts MATCH ? "
                                "ORDER BY rank, rowid LIMIT 20", (match,)).fetchall() if words else []
        got = index.search(lexical.stems(conn, words), 20)
        assert [d for d, _ in got] == [d for d, _ in expected], query
        assert all(math.isclose(a, b, rel_tol=1e-9) for (_, a), (_, b) in zip(got, expected))


def test_cli_index_mines_the_history(repo, tmp_path):
    def cli(*args: str) -> dict:
        done = subprocess.run([sys.executable, "-m", "server.cli", *args, "--index-dir", str(tmp_path / "cli"),
                               "--json"], capture_output=True, text=True, check=True)
        return json.loads(done.stdout)

    cli("index", str(repo))
    assert cli("status", "--workspace", str(repo))["history"]["commits"] == 3


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.mark.anyio
async def test_server_mines_at_start_and_again_after_a_commit(repo, workspace):
    import anyio
    from mcp.client import Client

    from server.mcp_server import build_server

    async def history_status() -> dict | None:
        return (await client.call_tool("index_status", {})).structured_content["history"]

    ws = workspace(repo)
    async with Client(build_server(ws, watch=True)) as client:
        with anyio.fail_after(20):
            while (await history_status()) is None:  # mined after the first pass, in the background
                await anyio.sleep(0.05)
        assert (await history_status())["commits"] == 3
        while ws.watcher is None:
            await anyio.sleep(0.05)
        head = commit(repo, {"app/alpha.py": FILES["app/alpha.py"] + "# faster\n"}, "Sped up alpha")
        with anyio.fail_after(20):  # the watcher's batch for the committed file mines the new head
            while (await history_status())["head"] != head:
                await anyio.sleep(0.05)
    assert ws.status()["history"]["commits"] == 4


def test_a_workspace_inside_a_repository_sees_its_own_paths(repo, workspace, tmp_path):
    commit(repo, {"lib/src/pkg/codec.py": "def decode(header):\n    return header\n"},
           "Fixed decoding of a quoted header value")
    inner = workspace(repo / "lib" / "src")  # a work tree's subfolder: git log --relative
    inner.index()
    assert inner.mine_history() == 1  # only the commit that touched Python code inside it
    assert set(history.file_scores(inner.reader(), QUERY)) == {"pkg/codec.py"}

    bare = tmp_path / "mirror.git"  # a bare mirror and an exported folder, as the benchmarks have them
    subprocess.run(["git", "clone", "-q", "--bare", str(repo), str(bare)], check=True, capture_output=True)
    exported = write_tree(tmp_path / "export", {"pkg/codec.py": "def decode(header):\n    return header\n"})
    ws = workspace(exported, index_dir=tmp_path / "export-idx")
    ws.index()
    assert ws.mine_history(bare, "HEAD", subdir="lib/src") == 1
    assert set(history.file_scores(ws.reader(), QUERY)) == {"pkg/codec.py"}


def test_cli_watch_prints_each_batch_and_each_new_head(repo, tmp_path):
    """`codeahead watch --json`: one line per applied batch, one per HEAD the watcher mined; Ctrl-C stops it."""
    proc = subprocess.Popen([sys.executable, "-m", "server.cli", "watch", str(repo), "--index-dir",
                             str(tmp_path / "watch"), "--json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    lines: dict[str, queue.Queue] = {"out": queue.Queue(), "err": queue.Queue()}
    for name, stream in (("out", proc.stdout), ("err", proc.stderr)):
        threading.Thread(target=lambda s=stream, q=lines[name]: [q.put(line) for line in s], daemon=True).start()

    def next_line(name: str, contains: str) -> str:
        while True:
            line = lines[name].get(timeout=30)
            if contains in line:
                return line

    try:
        next_line("err", "watching")
        write_tree(repo, {"app/alpha.py": FILES["app/alpha.py"] + "# faster\n"})
        assert json.loads(next_line("out", '"changes"'))["parsed"] == 1
        git(repo, "commit", "-q", "-am", "Sped up alpha")
        head = git(repo, "rev-parse", "HEAD").strip()
        assert json.loads(next_line("out", '"history"'))["history"] == {"head": head, "commits": 4}
    finally:
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 0
