"""Build the predicted files' context in the background: one worker, bounded queue and cache, stale jobs dropped."""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable

log = logging.getLogger(__name__)

DEFAULT_TOP_K = 5
#: Jobs waiting at most; a new event replaces them anyway, so this only caps a burst.
MAX_QUEUE = 16
#: Built entries kept (least recently used dropped): the memory bound.
MAX_ENTRIES = 64


class Prefetcher:
    """After each event, build the top predicted files with ``build(path)``; count requests served from them."""

    def __init__(self, build: Callable[[str], object], *, max_queue: int = MAX_QUEUE,
                 max_entries: int = MAX_ENTRIES) -> None:
        if max_queue < 1 or max_entries < 1:
            raise ValueError(f"prefetch bounds must be >= 1 (max_queue={max_queue}, max_entries={max_entries})")
        self._build = build
        self.max_queue = max_queue
        self.max_entries = max_entries
        self._cond = threading.Condition()
        self._queue: deque[tuple[int, str]] = deque()
        self._entries: OrderedDict[str, object] = OrderedDict()
        self._generation = 0
        self._busy = False
        self._closed = False
        self.counts = {"submitted": 0, "built": 0, "stale": 0, "dropped": 0, "failed": 0,
                       "already": 0, "requests": 0, "hits": 0}
        self._worker = threading.Thread(target=self._run, name="codeahead-prefetch", daemon=True)
        self._worker.start()

    def submit(self, paths: Iterable[str]) -> int:
        """Replace pending work with ``paths`` (best first) under a new generation; returns it."""
        with self._cond:
            self._generation += 1
            self.counts["stale"] += len(self._queue)
            self._queue.clear()
            for path in paths:
                if path in self._entries:
                    self._entries.move_to_end(path)
                    self.counts["already"] += 1
                elif len(self._queue) >= self.max_queue:
                    self.counts["dropped"] += 1
                elif all(path != p for _, p in self._queue):
                    self._queue.append((self._generation, path))
                    self.counts["submitted"] += 1
            self._cond.notify()
            return self._generation

    def after_event(self, predictor, *, task_id: str | None = None, top_k: int = DEFAULT_TOP_K) -> int:
        """Prefetch the predictor's current top ``top_k`` files for ``task_id``."""
        return self.submit(p.path for p in predictor.predict(task_id=task_id, top_k=top_k))

    def record_request(self, path: str):
        """A request for ``path`` arrived: the prefetched entry (a hit) or None (a miss)."""
        with self._cond:
            self.counts["requests"] += 1
            if path not in self._entries:
                return None
            self.counts["hits"] += 1
            self._entries.move_to_end(path)
            return self._entries[path]

    def invalidate(self, paths: Iterable[str]) -> None:
        """Drop entries whose files changed, so a stale build is never served."""
        with self._cond:
            for path in paths:
                self._entries.pop(path, None)

    def is_prefetched(self, path: str) -> bool:
        """Whether ``path`` has a built entry (does not count as a request)."""
        with self._cond:
            return path in self._entries

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Block until the queue is empty and nothing is building; False on timeout."""
        with self._cond:
            return self._cond.wait_for(lambda: not self._queue and not self._busy, timeout)

    def stats(self) -> dict:
        """Counters, current sizes and the hit rate of requests."""
        with self._cond:
            requests = self.counts["requests"]
            return {**self.counts, "queued": len(self._queue), "entries": len(self._entries),
                    "generation": self._generation,
                    "hit_rate": round(self.counts["hits"] / requests, 4) if requests else None}

    def close(self, timeout: float = 5.0) -> None:
        """Stop the worker after its current build (pending jobs are dropped)."""
        with self._cond:
            self._closed = True
            self._queue.clear()
            self._cond.notify_all()
        self._worker.join(timeout)

    def _run(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._queue or self._closed)
                if self._closed:
                    return
                generation, path = self._queue.popleft()
                if generation != self._generation:  # superseded while it waited
                    self.counts["stale"] += 1
                    self._cond.notify_all()
                    continue
                self._busy = True
            try:
                entry = self._build(path)
                ok = True
            except Exception as exc:  # a failing build must not kill the worker
                log.warning("prefetch of %s failed (%s); it will be built on request instead", path, exc)
                ok = False
            with self._cond:
                self._busy = False
                if ok:
                    self._entries[path] = entry
                    self._entries.move_to_end(path)
                    while len(self._entries) > self.max_entries:
                        self._entries.popitem(last=False)
                    self.counts["built"] += 1
                else:
                    self.counts["failed"] += 1
                self._cond.notify_all()
