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
#: How many saves the state has seen (its own row): a process that loaded an older one merges on save.
_GENERATION_KEY = "model:generation"


def _connection(conn_or_reader):
    """Accept a connection, or a callable giving this thread's connection (``Workspace.reader``)."""
    return conn_or_reader if hasattr(conn_or_reader, "execute") else conn_or_reader()


class PredictStore:
    """Saves and loads the predictor's state in one row of the index database (compressed JSON).

    Processes share it (a server, and the CLI commands an agent runs beside it), each with a model in
    memory. A save names the generation its model was loaded at; when another process saved since, the
    caller's ``merge`` rebuilds the state from the stored one plus its own moves since, in the same
    transaction. The last writer used to win: 8 parallel ``file_opened`` commands kept 6 or 7 moves.
    """

    def __init__(self, conn) -> None:
        self._conn = conn
        self._lock = threading.Lock()
        with self._lock:
            self._conn.executescript(PREDICT_SCHEMA)
            self._conn.commit()

    def save(self, state: dict, loaded_at: int = 0,
             merge: Callable[[dict | None], dict] | None = None) -> int:
        """Store ``state``, built on the generation ``loaded_at``; returns the new generation.

        When the stored generation is another (another process saved or reset meanwhile), ``merge(stored
        state or None)`` gives the state to store instead; without ``merge`` the stored one is replaced.
        """
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")  # no other save between reading the generation and writing
            try:
                stored, current = self._read()
                if current != loaded_at and merge is not None:
                    state = merge(stored)
                blob = zlib.compress(json.dumps(state, separators=(",", ":")).encode())
                self._conn.executemany("INSERT OR REPLACE INTO predict_state(key, version, blob) VALUES (?, ?, ?)",
                                       [(_KEY, STATE_VERSION, blob),
                                        (_GENERATION_KEY, STATE_VERSION, str(current + 1).encode())])
                self._conn.commit()
            except BaseException:
                self._conn.rollback()
                raise
        return current + 1

    def load(self) -> tuple[dict | None, int]:
        """The saved state (None when nothing, or an older format, was saved) and its generation."""
        with self._lock:
            return self._read()

    def _read(self) -> tuple[dict | None, int]:
        # One statement, one snapshot: read apart, a save committed in between paired a state with the
        # next generation, and the moves of that save were lost at this process's own save.
        rows = {key: (version, blob) for key, version, blob in self._conn.execute(
            "SELECT key, version, blob FROM predict_state WHERE key IN (?, ?)", (_KEY, _GENERATION_KEY))}
        generation = int(rows[_GENERATION_KEY][1]) if _GENERATION_KEY in rows else 0
        version, blob = rows.get(_KEY, (None, None))
        return (json.loads(zlib.decompress(blob)) if version == STATE_VERSION else None), generation

    def reset(self) -> int:
        """Forget the saved state (a process holding an older model keeps only its moves since its load);
        returns the new generation."""
        with self._lock:
            row = self._conn.execute("SELECT blob FROM predict_state WHERE key=?", (_GENERATION_KEY,)).fetchone()
            generation = (int(row[0]) if row else 0) + 1
            self._conn.execute("DELETE FROM predict_state WHERE key=?", (_KEY,))
            self._conn.execute("INSERT OR REPLACE INTO predict_state(key, version, blob) VALUES (?, ?, ?)",
                               (_GENERATION_KEY, STATE_VERSION, str(generation).encode()))
            self._conn.commit()
        return generation


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
