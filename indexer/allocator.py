"""A fixed malloc mmap threshold, so that a serving process's peak RSS does not depend on luck.

glibc serves a large block (a numpy array of postings, an SQLite result) with its own mmap,
but after freeing one it raises the threshold to that block's size, so later blocks of the same
size come from the heap arenas instead, where freed space stays resident and each loader thread
has an arena of its own. On Django, warming the in-memory indexes then peaked at 275 to 298 MB
from run to run (RssAnon 155 to 197 MB after 166 queries) with the same Python allocations;
with the threshold pinned at 1 MiB, 257 to 265 MB, and get_context's p50 unchanged
(``benchmarks/README.md``, 2026-12-03). Pinned at 128 KiB it peaks a little lower but maps and
unmaps every query's score array: p99 rose by ~4 ms.

It is a process-wide setting, applied once, before the first Workspace loads anything. A process
that set ``MALLOC_MMAP_THRESHOLD_`` itself keeps its own choice; other C libraries are left alone.
"""

from __future__ import annotations

import ctypes
import logging
import os
import platform
import threading

log = logging.getLogger(__name__)

#: Blocks of at least this size get their own mapping, returned to the system when freed.
MMAP_THRESHOLD_BYTES = 1 << 20
_M_MMAP_THRESHOLD = -3  # glibc's malloc.h
_ENV_OVERRIDE = "MALLOC_MMAP_THRESHOLD_"

_lock = threading.Lock()
_applied: bool | None = None


def pin_mmap_threshold() -> bool:
    """Pin glibc's mmap threshold at ``MMAP_THRESHOLD_BYTES`` (once per process); whether it is pinned."""
    global _applied
    with _lock:
        if _applied is None:
            _applied = _pin()
        return _applied


def _pin() -> bool:
    if os.environ.get(_ENV_OVERRIDE) is not None:  # the user's own threshold, already in force
        return True
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        # The process's own symbols hold glibc's: ``ctypes.util.find_library`` would run ldconfig (~16 ms a start).
        return ctypes.CDLL(None).mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES) == 1
    except (OSError, AttributeError) as exc:  # no mallopt in this libc: the default allocator works
        log.debug("malloc mmap threshold not pinned: %s", exc)
        return False
