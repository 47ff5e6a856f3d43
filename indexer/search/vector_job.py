"""Background embedding: nodes get vectors after the lexical index and graph are ready.

Search works at once from BM25 and improves as vectors land. The job embeds
nodes that have no vector yet in batches, outside the write lock, and writes
each batch in a short transaction under it, so an index pass is never held up
for long.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from indexer.context.render import SourceCache, SourceLines
from indexer.graph.query import nodes_by_ids
from indexer.search.embed import Embedder, chunk_text_for_embedding
from indexer.search.vectors import VectorIndex

log = logging.getLogger(__name__)
BATCH = 256


class VectorJob:
    """Keeps ``node_vectors`` in step with ``nodes``; one background thread per workspace."""

    def __init__(self, connect: Callable[[], object], write_conn, write_lock, embedder: Embedder) -> None:
        self._connect = connect
        self._write_conn = write_conn
        self._lock = write_lock
        self.embedder = embedder
        with self._lock:
            self.vectors = VectorIndex(write_conn, embedder.dim)
            self.vectors.ensure(embedder.name, embedder.dim)
            write_conn.commit()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._idle = threading.Event()
        self._idle.set()
        self._thread: threading.Thread | None = None
        self.done = 0
        self.total = 0

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="codeahead-vectors", daemon=True)
            self._thread.start()

    def poke(self) -> None:
        """New nodes may be waiting (called after each index pass)."""
        self._idle.clear()
        self._wake.set()
        self.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def wait(self, timeout: float | None = None) -> bool:
        """Block until every node has a vector (or ``timeout``); True when caught up."""
        return self._idle.wait(timeout)

    def progress(self) -> dict:
        return {"embedder": self.embedder.name, "embedded": self.done, "total": self.total,
                "complete": self._idle.is_set()}

    def _run(self) -> None:
        conn = self._connect()
        try:
            while not self._stop.is_set():
                self._wake.wait()
                self._wake.clear()
                try:
                    self._catch_up(conn)
                except Exception:  # a failed batch must not kill the job; the next poke retries
                    log.exception("embedding nodes failed")
                if not self._wake.is_set():
                    self._idle.set()
        finally:
            conn.close()

    def _missing(self, conn) -> list[int]:
        have = set(VectorIndex(conn, self.embedder.dim).ids())
        ids = [r[0] for r in conn.execute("SELECT id FROM nodes WHERE kind != 'library' ORDER BY id")]
        self.total = len(ids)
        self.done = len(have)
        return [i for i in ids if i not in have]

    def _catch_up(self, conn) -> None:
        missing = self._missing(conn)
        lines = SourceLines(size=16)
        for start in range(0, len(missing), BATCH):
            if self._stop.is_set() or self._wake.is_set():
                return  # superseded: a newer pass changed the nodes; start over
            conn.rollback()  # a fresh snapshot per batch
            sources = SourceCache(conn, lines)
            nodes = nodes_by_ids(conn, missing[start : start + BATCH])
            ids = sorted(nodes)
            texts = [chunk_text_for_embedding(nodes[i].name, nodes[i].qualname, nodes[i].signature,
                                              nodes[i].doc, sources.code(nodes[i])) for i in ids]
            matrix = self.embedder.embed(texts)
            with self._lock:
                alive = {r[0] for r in self._write_conn.execute(
                    f"SELECT id FROM nodes WHERE id IN ({','.join('?' * len(ids))})", ids)}
                keep = [k for k, i in enumerate(ids) if i in alive]
                self.vectors.upsert([ids[k] for k in keep], matrix[keep])
                self._write_conn.commit()
            self.done += len(keep)
