"""Vectors in the background: search answers from BM25 at once, then with the embedding once the nodes are
embedded; edits embed only what is new, deleted nodes lose their vectors, and the index remembers them."""

from __future__ import annotations

from conftest import write_tree
from indexer.search.vectors import stored_progress
from indexer.workspace import Workspace

FILES = {
    "net/retry.py": "def retry_request(url):\n    \"\"\"Send the request again after a failure.\"\"\"\n"
                    "    return url\n",
    "net/pool.py": "def reuse_connections(host):\n    \"\"\"Keep sockets open between calls.\"\"\"\n    return host\n",
    "text/format.py": "def render_markdown(doc):\n    \"\"\"Turn a document into HTML.\"\"\"\n    return doc\n",
}


def test_vectors_land_after_the_index_and_follow_its_changes(tmp_path):
    root = write_tree(tmp_path / "ws", FILES)
    with Workspace(root, index_dir=tmp_path / "idx", embedder="wordllama") as ws:
        ws.index()
        before = ws.search("retry request", top_k=3)
        assert before[0].node.qualname == "retry.retry_request"  # lexical, before any vector
        assert ws.status()["vectors"] is None
        assert ws.enable_vectors(wait=True)
        progress = ws.status()["vectors"]
        assert progress["complete"] and progress["embedded"] == progress["total"] == 6  # 3 modules, 3 functions
        hits = ws.search("keep network sockets alive", top_k=10)
        assert any("vector" in h.why for h in hits)  # the embedding now takes part
        assert "pool.reuse_connections" in [h.node.qualname for h in hits[:3]]

        write_tree(root, {"net/backoff.py": "def wait_longer(attempt):\n    return 2 ** attempt\n"})
        (root / "text" / "format.py").unlink()
        ws.index()
        assert ws._vector_job.wait(60)
        progress = ws.status()["vectors"]
        assert progress["embedded"] == progress["total"] == 6  # +2 nodes of backoff.py, -2 of format.py
        conn = ws.reader()
        gone = conn.execute("SELECT count(*) FROM node_vectors WHERE node_id NOT IN (SELECT id FROM nodes)")
        assert gone.fetchone()[0] == 0

    with Workspace(root, index_dir=tmp_path / "idx") as again:  # a process that embeds nothing itself
        stored = again.status()["vectors"]
        assert stored == stored_progress(again.reader())
        assert stored["embedder"].startswith("wordllama") and stored["complete"] and stored["total"] == 6
