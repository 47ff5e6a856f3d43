"""Where a graph walk reads its edges: SQLite, or a numpy copy of one index generation.

Reading a two-hop neighbourhood through SQLite costs ~10 ms a request on Django
(thousands of rows through the Python driver); gathered from arrays it costs well
under one. The copy is loaded in a background thread when a request meets a
generation the memory does not hold yet, and that request (and any other until
the copy is ready) reads SQLite: answers never mix two generations, and no request
waits for a load. Both sources return the same rows in the same order, so a walk
gives the same answer from either.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Protocol

import numpy as np

from indexer.store.schema import generation  # noqa: F401  (re-exported: readers key memory by it)

#: How strongly each edge kind carries relevance (either direction); kinds not listed carry nothing.
EDGE_WEIGHTS = {"calls": 1.0, "tests": 0.6, "inherits": 0.8, "imports": 0.3, "contains": 0.7}
_WEIGHT = "CASE kind " + " ".join(f"WHEN '{k}' THEN {w}" for k, w in EDGE_WEIGHTS.items()) + " END * confidence"
_KINDS = ", ".join(f"'{k}'" for k in EDGE_WEIGHTS)
_CHUNK = 400  # ids per IN (...) list
_NO_ROWS = np.empty((0, 3))

log = logging.getLogger(__name__)


class EdgeSource(Protocol):
    def touching(self, ids: list[int]) -> np.ndarray:
        """(src, dst, weight) rows of every carrying edge with an end in ``ids``: unique, sorted."""
        ...


def _sorted_unique(rows: np.ndarray) -> np.ndarray:
    """Rows sorted by (src, dst, weight) without repeats (np.unique(axis=0) is ~10x slower)."""
    if len(rows) < 2:
        return rows
    rows = rows[np.lexsort((rows[:, 2], rows[:, 1], rows[:, 0]))]
    fresh = np.empty(len(rows), dtype=bool)
    fresh[0] = True
    np.any(rows[1:] != rows[:-1], axis=1, out=fresh[1:])
    return rows[fresh]


class SqlEdges:
    """Edges read through one connection (its current snapshot)."""

    def __init__(self, conn) -> None:
        self.conn = conn

    def touching(self, ids: list[int]) -> np.ndarray:
        parts = []
        for i in range(0, len(ids), _CHUNK):
            chunk = ids[i : i + _CHUNK]
            marks = ",".join("?" * len(chunk))
            rows = self.conn.execute(
                f"SELECT src, dst, {_WEIGHT} FROM edges WHERE src IN ({marks}) AND kind IN ({_KINDS}) "
                f"UNION SELECT src, dst, {_WEIGHT} FROM edges WHERE dst IN ({marks}) AND kind IN ({_KINDS})",
                (*chunk, *chunk)).fetchall()
            if rows:
                parts.append(np.array(rows, dtype=np.float64))
        if not parts:
            return _NO_ROWS
        rows = np.concatenate(parts)
        return _sorted_unique(rows[rows[:, 2] > 0])


class EdgeArrays:
    """Every carrying edge of one generation, indexed by node id in both directions (CSR).

    The rows are kept sorted by (src, dst, weight) without repeats, so edge index order is row
    order: ``touching`` marks the edges it meets and reads them out in order, with no sort per
    request (sorting the rows of each request cost ~1.5 ms of a two-hop walk on Django).
    """

    def __init__(self, generation: int, src: np.ndarray, dst: np.ndarray, weight: np.ndarray) -> None:
        self.generation = generation
        keep = weight > 0
        src, dst, weight = src[keep], dst[keep], weight[keep]
        order = np.lexsort((weight, dst, src))  # sorted and deduplicated column by column: no n x 3 copies
        src, dst, weight = src[order], dst[order], weight[order]
        fresh = np.ones(len(src), dtype=bool)
        fresh[1:] = (src[1:] != src[:-1]) | (dst[1:] != dst[:-1]) | (weight[1:] != weight[:-1])
        src, dst, weight = src[fresh], dst[fresh], weight[fresh]
        self._rows = np.empty((len(src), 3))  # float64 (src, dst, weight), as SqlEdges gives them
        self._rows[:, 0], self._rows[:, 1], self._rows[:, 2] = src, dst, weight
        ends = np.concatenate([src, dst])
        edge = np.concatenate([np.arange(len(src))] * 2)
        order = np.argsort(ends, kind="stable")
        self._edge_of = edge[order]  # edge indices grouped by the node at either end
        size = int(ends.max()) + 2 if len(ends) else 1
        self._start = np.zeros(size, dtype=np.int64)  # node id -> first slot in _edge_of
        np.cumsum(np.bincount(ends, minlength=size - 1), out=self._start[1:])

    @classmethod
    def load(cls, conn) -> EdgeArrays:
        """Read the edges and their generation in one snapshot of ``conn``."""
        conn.execute("BEGIN")
        try:
            gen = generation(conn)
            rows = conn.execute(f"SELECT src, dst, {_WEIGHT} FROM edges WHERE kind IN ({_KINDS})").fetchall()
        finally:
            conn.rollback()
        table = np.array(rows, dtype=np.float64).reshape(-1, 3)
        return cls(gen, table[:, 0].astype(np.int64), table[:, 1].astype(np.int64), table[:, 2])

    def touching(self, ids: list[int]) -> np.ndarray:
        ids_a = np.asarray(ids, dtype=np.int64)
        ids_a = ids_a[(ids_a >= 0) & (ids_a < len(self._start) - 1)]
        starts = self._start[ids_a]
        counts = self._start[ids_a + 1] - starts
        total = int(counts.sum())
        if total == 0:
            return _NO_ROWS
        before = np.cumsum(counts) - counts
        slots = np.repeat(starts - before, counts) + np.arange(total)
        met = np.zeros(len(self._rows), dtype=bool)  # an edge with both ends in ``ids`` is met twice
        met[self._edge_of[slots]] = True
        return self._rows[np.flatnonzero(met)]


class EdgeMemory:
    """Holds the EdgeArrays of the newest generation seen, loading them in the background.

    ``connect`` opens a connection for the loading thread (closed after each load). The first
    load starts at once; a reload waits until the index has kept one generation for ``settle``
    seconds, so a burst of saves costs no reloads (each takes ~0.3 CPU-s on Django and would
    compete with the watcher's passes for the interpreter).
    """

    def __init__(self, connect: Callable[[], object], settle: float = 1.0) -> None:
        self._connect = connect
        self._settle = settle
        self._arrays: EdgeArrays | None = None
        self._loading: threading.Thread | None = None
        self._lock = threading.Lock()
        self._closed = False
        self._seen: tuple[int, float] = (-1, 0.0)  # (newest generation a request met, when first met)

    def source(self, conn) -> EdgeSource:
        """The arrays when they hold the generation ``conn`` sees, else ``conn`` itself (and maybe a load)."""
        arrays = self._arrays
        current = generation(conn)
        if arrays is not None and arrays.generation == current:
            return arrays
        now = time.monotonic()
        with self._lock:
            if self._seen[0] != current:
                self._seen = (current, now)
            settled = now - self._seen[1] >= self._settle
        if arrays is None or settled:
            self._load_in_background()
        return SqlEdges(conn)

    def start(self) -> None:
        """Load now rather than at the first request."""
        self._load_in_background()

    def wait(self, timeout: float | None = None) -> None:
        """Block until a running load ends (tests, benchmarks and shutdown)."""
        thread = self._loading
        if thread is not None:
            thread.join(timeout)

    def close(self) -> None:
        self._closed = True
        self.wait()

    def _load_in_background(self) -> None:
        with self._lock:
            if self._closed or (self._loading is not None and self._loading.is_alive()):
                return
            self._loading = threading.Thread(target=self._load, name="codeahead-edges", daemon=True)
            self._loading.start()

    def _load(self) -> None:
        try:
            conn = self._connect()
            try:
                arrays = EdgeArrays.load(conn)
            finally:
                conn.close()
        except Exception:  # a failed load only costs speed: requests keep reading SQLite
            log.exception("loading the graph's edges into memory failed")
            return
        if self._arrays is None or arrays.generation >= self._arrays.generation:
            self._arrays = arrays
