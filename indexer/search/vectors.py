"""Node embeddings stored in a sqlite-vec ``vec0`` table, searched by cosine KNN.

The table remembers which embedder filled it (``vector_meta``), so switching
models rebuilds it instead of mixing incomparable vectors. Methods never
commit: the caller owns the transaction, like every other store write.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

#: sqlite-vec refuses KNN queries asking for more neighbours than this.
MAX_K = 4096
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class VectorIndex:
    """One vec0 table of unit vectors keyed by node id; knn() answers cosine similarity."""

    def __init__(self, conn: Any, dim: int, table: str = "node_vectors") -> None:
        if not _IDENT.fullmatch(table):
            raise ValueError(f"vector table name {table!r} is not a plain SQL identifier; use letters, digits, _")
        if dim <= 0:
            raise ValueError(f"vector width must be positive, got {dim} for table {table}")
        self._conn = conn
        self.table = table
        self.dim = dim
        conn.execute(
            "CREATE TABLE IF NOT EXISTS vector_meta("
            "tbl TEXT PRIMARY KEY, embedder TEXT NOT NULL, dim INTEGER NOT NULL)"
        )
        self._create()

    def _create(self) -> None:
        """Create the vec0 table for the current width if it is missing."""
        self._conn.execute(
            f"CREATE VIRTUAL TABLE IF NOT EXISTS {self.table} USING vec0("
            f"node_id INTEGER PRIMARY KEY, embedding float[{self.dim}] distance_metric=cosine)"
        )

    def ensure(self, embedder_name: str, dim: int) -> bool:
        """Match the table to this embedder; True when stored vectors were dropped for a new one."""
        row = self._conn.execute(
            "SELECT embedder, dim FROM vector_meta WHERE tbl = ?", (self.table,)
        ).fetchone()
        if row is not None and tuple(row) == (embedder_name, dim) and dim == self.dim:
            return False
        # No record but rows present means vectors of unknown origin: drop them too.
        had_vectors = row is not None or self.count() > 0
        self._conn.execute(f"DROP TABLE IF EXISTS {self.table}")
        self.dim = dim
        self._create()
        self._conn.execute(
            "INSERT OR REPLACE INTO vector_meta(tbl, embedder, dim) VALUES (?, ?, ?)",
            (self.table, embedder_name, dim),
        )
        return had_vectors

    def upsert(self, ids: Sequence[int], vectors: np.ndarray) -> int:
        """Replace the vectors of ``ids``; all-zero or non-finite rows are skipped. Returns rows stored."""
        rows = np.ascontiguousarray(vectors, dtype=np.float32)
        if rows.ndim != 2 or rows.shape != (len(ids), self.dim):
            raise ValueError(
                f"expected {len(ids)} vectors of width {self.dim} for {self.table}, got shape {rows.shape}"
            )
        self.delete(ids)
        # sqlite-vec gives a NULL cosine distance for a zero vector and sorts it first.
        keep = np.isfinite(rows).all(axis=1) & (np.abs(rows).sum(axis=1) > 0)
        self._conn.executemany(
            f"INSERT INTO {self.table}(node_id, embedding) VALUES (?, ?)",
            [(int(ids[i]), rows[i].tobytes()) for i in np.flatnonzero(keep)],
        )
        return int(keep.sum())

    def delete(self, ids: Iterable[int]) -> None:
        """Remove the vectors of ``ids``; ids without a vector are ignored."""
        self._conn.executemany(
            f"DELETE FROM {self.table} WHERE node_id = ?", [(int(i),) for i in ids]
        )

    def knn(self, vector: np.ndarray, k: int) -> list[tuple[int, float]]:
        """The ``k`` nearest node ids with cosine similarity (1 - distance), most similar first."""
        query = np.ascontiguousarray(vector, dtype=np.float32).reshape(-1)
        if query.shape != (self.dim,):
            raise ValueError(f"query vector has width {query.shape[0]}, {self.table} holds width {self.dim}")
        if k <= 0 or not np.abs(query).sum() > 0:
            return []
        rows = self._conn.execute(
            f"SELECT node_id, distance FROM {self.table} "
            "WHERE embedding MATCH ? AND k = ? ORDER BY distance",
            (query.tobytes(), min(k, MAX_K)),
        ).fetchall()
        return [(int(node_id), 1.0 - float(dist)) for node_id, dist in rows if dist is not None]

    def count(self) -> int:
        """How many nodes have a vector."""
        return int(self._conn.execute(f"SELECT count(*) FROM {self.table}").fetchone()[0])

    def ids(self) -> set[int]:
        """The node ids that have a vector, to find nodes still to embed."""
        return {int(r[0]) for r in self._conn.execute(f"SELECT node_id FROM {self.table}")}


def stored_progress(conn: Any, table: str = "node_vectors") -> dict | None:
    """What earlier embedding left in the index, in ``VectorJob.progress()``'s form; None if nothing ever did.

    A process that embeds nothing itself (``codeahead status``) still reports the vectors a server or an
    earlier command stored.
    """
    try:
        row = conn.execute("SELECT embedder FROM vector_meta WHERE tbl = ?", (table,)).fetchone()
        if row is None:
            return None
        embedded = int(conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0])
    except Exception:  # noqa: BLE001 - no vector tables, or sqlite-vec not loaded: nothing to report
        return None
    total = int(conn.execute("SELECT count(*) FROM nodes WHERE kind != 'library'").fetchone()[0])
    return {"embedder": row[0], "embedded": embedded, "total": total, "complete": embedded >= total}
