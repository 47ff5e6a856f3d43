"""A lock that processes sharing one index take around opening it and around an index pass.

SQLite serialises the writes, but not the steps around them. Two processes starting on a new index at
once (an agent running two commands in parallel, each indexing first) raced twice: one saw the database
the other was creating, still without its schema, took it for a foreign file and moved it aside; and a
pass plans from the store before it writes, so both planned to insert the same files and the second failed
on ``UNIQUE constraint failed: files.path``. Under this lock the second opens a finished database, and
plans after the first pass has committed.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

try:
    import fcntl
except ImportError:  # not POSIX: SQLite's own locking is all there is
    fcntl = None

LOCK_NAME = "index.lock"


@contextmanager
def index_lock(index_dir: Path) -> Iterator[None]:
    """Hold the index folder's lock, waiting for another process to release it (the folder must exist)."""
    if fcntl is None:
        yield
        return
    with open(index_dir / LOCK_NAME, "a+b") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
