"""Prediction I/O against the index database: the model's saved state, and the GraphView over the index."""

from __future__ import annotations

import json
import threading
import zlib
from collections.abc import Callable

PREDICT_SCHEMA = """
CREATE TABLE IF NOT EXISTS predict_state (
    key TEXT PRIMARY KEY,
    version INTEGER NOT NULL,
    blob BLOB NOT NULL
);
"""
#: Bumped when the saved state's shape changes; an older state is dropped, not misread.
STATE_VERSION = 1
_KEY = "model"


def _connection(conn_or_reader):
    """Accept a connection, or a callable giving this thread's connection (``Workspace.reader``)."""
    return conn_or_reader if hasattr(conn_or_reader, "execute") else conn_or_reader()


class PredictStore:
    """Saves and loads the predictor's state in one row of the index database (compressed JSON)."""

    def __init__(self, conn) -> None:
        self._conn = conn
        self._lock = threading.Lock()
        with self._lock:
            self._conn.executescript(PREDICT_SCHEMA)
            self._conn.commit()

    def save(self, state: dict) -> None:
        """Replace the saved state."""
        blob = zlib.compress(json.dumps(state, separators=(",", ":")).encode())
        with self._lock:
            self._conn.execute("INSERT OR REPLACE INTO predict_state(key, version, blob) VALUES (?, ?, ?)",
                               (_KEY, STATE_VERSION, blob))
            self._conn.commit()

    def load(self) -> dict | None:
        """The saved state, or None when nothing (or an older format) was saved."""
        with self._lock:
            row = self._conn.execute("SELECT version, blob FROM predict_state WHERE key=?", (_KEY,)).fetchone()
        if row is None or row[0] != STATE_VERSION:
            return None
        return json.loads(zlib.decompress(row[1]))

    def reset(self) -> None:
        """Forget the saved state."""
        with self._lock:
            self._conn.execute("DELETE FROM predict_state WHERE key=?", (_KEY,))
            self._conn.commit()


_FILES_LINKED = """
SELECT DISTINCT f2.path FROM files f1
JOIN nodes n1 ON n1.file_id = f1.id
JOIN edges e ON e.src = n1.id AND e.kind = ?
JOIN nodes n2 ON n2.id = e.dst
JOIN files f2 ON f2.id = n2.file_id
WHERE f1.path = ? AND f2.id != f1.id
"""
_FILES_LINKING = """
SELECT DISTINCT f1.path FROM files f2
JOIN nodes n2 ON n2.file_id = f2.id
JOIN edges e ON e.dst = n2.id AND e.kind = ?
JOIN nodes n1 ON n1.id = e.src
JOIN files f1 ON f1.id = n1.file_id
WHERE f2.path = ? AND f1.id != f2.id
"""


class SqliteGraphView:
    """The GraphView prediction reads, over a codeahead index (files, nodes, edges tables).

    ``reader`` is a connection or a callable returning this thread's connection (pass ``ws.reader``);
    ``ranked`` is optional query retrieval giving node ids best first (pass ``ws.ranked``).
    """

    def __init__(self, reader, ranked: Callable[[str], list] | None = None) -> None:
        self._reader = reader
        self._ranked = ranked

    def _paths(self, sql: str, *args) -> set[str]:
        return {r[0] for r in _connection(self._reader).execute(sql, args)}

    def files(self) -> list[str]:
        return [r[0] for r in _connection(self._reader).execute("SELECT path FROM files ORDER BY path")]

    def imports_of(self, path: str) -> set[str]:
        return self._paths(_FILES_LINKED, "imports", path)

    def imported_by(self, path: str) -> set[str]:
        return self._paths(_FILES_LINKING, "imports", path)

    def tests_of(self, path: str) -> set[str]:
        return self._paths(_FILES_LINKING, "tests", path)

    def targets_of_tests(self, path: str) -> set[str]:
        return self._paths(_FILES_LINKED, "tests", path)

    def search_files(self, query: str, k: int) -> list[tuple[str, float]]:
        """Files of the best-ranked nodes for ``query``, each scored by its best node."""
        if self._ranked is None or not query.strip():
            return []
        best: dict[int, float] = {}
        for node_id, score, *_ in self._ranked(query):
            best.setdefault(node_id, score)
            if len(best) >= k * 10:
                break
        if not best:
            return []
        marks = ",".join("?" * len(best))
        rows = _connection(self._reader).execute(
            f"SELECT n.id, f.path FROM nodes n JOIN files f ON f.id = n.file_id WHERE n.id IN ({marks})",
            list(best)).fetchall()
        files: dict[str, float] = {}
        for node_id, path in rows:
            files[path] = max(files.get(path, float("-inf")), best[node_id])
        return sorted(files.items(), key=lambda kv: (-kv[1], kv[0]))[:k]
