"""Values computed once per state of an index (a generation, a mined history head), the last few kept.

The same index answers query after query, so what a query derives from the index as a whole (file names,
vendored folders, the commit messages' postings) is built once per state and reused until the state moves.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable

from indexer.search.edges import generation


class PerIndexState:
    """Values keyed by (database file, state), least recently used dropped past ``kept``."""

    def __init__(self, kept: int) -> None:
        self._values: OrderedDict[tuple[str, Hashable], object] = OrderedDict()
        self._kept = kept
        self._lock = threading.Lock()

    def get(self, conn, build: Callable[[], object], state: Hashable | None = None):
        """The value for ``state`` of ``conn``'s database (default: the generation it reads), from
        ``build()`` the first time."""
        key = (_database(conn), generation(conn) if state is None else state)
        with self._lock:
            if key in self._values:
                self._values.move_to_end(key)
                return self._values[key]
        value = build()
        with self._lock:
            self._values[key] = value
            while len(self._values) > self._kept:
                self._values.popitem(last=False)
        return value

    def recent(self, conn) -> list:
        """The values kept for ``conn``'s database, newest first."""
        db = _database(conn)
        with self._lock:
            return [v for (d, _), v in reversed(self._values.items()) if d == db]


def _database(conn) -> str:
    return conn.execute("PRAGMA database_list").fetchone()[2]
