"""A lock that processes sharing one index take around opening it and around an index pass.

SQLite serialises the writes, but not the steps around them. Two processes starting on a new index at
once (an agent running two commands in parallel, each indexing first) raced twice: one saw the database
the other was creating, still without its schema, took it for a foreign file and moved it aside; and a
pass plans from the store before it writes, so both planned to insert the same files and the second failed
on ``UNIQUE constraint failed: files.path``. Under this lock the second opens a finished database, and
plans after the first pass has committed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

try:
    import fcntl
except ImportError:  # not POSIX: SQLite's own locking is all there is
    fcntl = None

LOCK_NAME = "index.lock"  # held around each index pass
#: Held around opening the database only: a command opening the index need not wait for another's pass.
OPEN_LOCK_NAME = "open.lock"


@contextmanager
def index_lock(index_dir: Path, on_wait: Callable[[], None] | None = None, *, name: str = LOCK_NAME) -> Iterator[None]:
    """Hold the index folder's lock, waiting for another process to release it (the folder must exist).

    ``on_wait`` is called once when another process holds it: a first index of a large workspace, or a
    watcher's pass after a checkout, can keep a command waiting for seconds, and it should say why."""
    if fcntl is None:
        yield
        return
    with open(index_dir / name, "a+b") as handle:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if on_wait is not None:
                on_wait()
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
