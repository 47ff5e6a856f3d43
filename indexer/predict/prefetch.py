"""Build the predicted files' context in the background: one worker, bounded queue and cache, stale jobs dropped.

Entries are keyed by (task, path): the context of a file asked for within a task is built from that task's
state, so an entry built for one task (or for none) never counts as serving another.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable

log = logging.getLogger(__name__)

DEFAULT_TOP_K = 5
#: Jobs waiting at most; a new event replaces them anyway, so this only caps a burst (above the workspace's top k).
MAX_QUEUE = 32
#: Built entries kept (least recently used dropped): the memory bound.
MAX_ENTRIES = 64

#: What an entry is built for: (task id or None, workspace-relative path).
Key = tuple[str | None, str]


class Prefetcher:
    """After each event, build the top predicted files with ``build(path, task_id)``; count requests served."""

    def __init__(self, build: Callable[[str, str | None], object], *, max_queue: int = MAX_QUEUE,
                 max_entries: int = MAX_ENTRIES) -> None:
        if max_queue < 1 or max_entries < 1:
            raise ValueError(f"prefetch bounds must be >= 1 (max_queue={max_queue}, max_entries={max_entries})")
        self._build = build
        self.max_queue = max_queue
        self.max_entries = max_entries
        self._cond = threading.Condition()
        self._queue: deque[tuple[int, Key]] = deque()
        self._entries: OrderedDict[Key, object] = OrderedDict()
        self._generation = 0
        self._building: Key | None = None
        self._building_stale = False  # the key being built was invalidated meanwhile: do not keep the result
        self._closed = False
        self.counts = {"submitted": 0, "built": 0, "stale": 0, "dropped": 0, "failed": 0,
                       "already": 0, "requests": 0, "hits": 0}
        self._worker = threading.Thread(target=self._run, name="codeahead-prefetch", daemon=True)
        self._worker.start()

    def submit(self, paths: Iterable[str], *, task_id: str | None = None) -> int:
        """Replace pending work with ``paths`` (best first) for ``task_id`` under a new generation; returns it."""
        with self._cond:
            self._generation += 1
            self.counts["stale"] += len(self._queue)
            self._queue.clear()
            for path in paths:
                key = (task_id, path)
                if key in self._entries:
                    self._entries.move_to_end(key)
                    self.counts["already"] += 1
                elif len(self._queue) >= self.max_queue:
                    self.counts["dropped"] += 1
                elif (key != self._building or self._building_stale) and all(key != k for _, k in self._queue):
                    # a key whose build will be thrown away (its task moved on meanwhile) is built again
                    self._queue.append((self._generation, key))
                    self.counts["submitted"] += 1
            self._cond.notify()
            return self._generation

    def after_event(self, predictor, *, task_id: str | None = None, top_k: int = DEFAULT_TOP_K) -> int:
        """Prefetch the predictor's current top ``top_k`` files for ``task_id``."""
        return self.submit((p.path for p in predictor.predict(task_id=task_id, top_k=top_k)), task_id=task_id)

    def record_request(self, path: str, task_id: str | None = None, *, any_task: bool = False,
                       reads: object = None):
        """A request for ``path`` within ``task_id`` arrived: the prefetched entry (a hit) or None (a miss).

        ``any_task``: the request reads something that does not depend on the task (a module summary), so an
        entry built for any task serves it. ``reads``: what the request reads (a cache key), when an entry is
        the collection of what its build wrote; an entry without it (another budget, a query) does not serve.
        """
        def serves(key: Key) -> bool:
            return key in self._entries and (reads is None or reads in self._entries[key])

        with self._cond:
            self.counts["requests"] += 1
            key = (task_id, path)
            if not serves(key) and any_task:
                key = next((k for k in reversed(self._entries) if k[1] == path and serves(k)), key)
            if not serves(key):
                return None
            self.counts["hits"] += 1
            self._entries.move_to_end(key)
            return self._entries[key]

    def invalidate(self, paths: Iterable[str]) -> None:
        """Drop every task's entries of files that changed, so a stale build is never served."""
        changed = set(paths)
        self._drop(lambda key: key[1] in changed)

    def forget_task(self, task_id: str | None) -> None:
        """Drop a task's entries: its event log moved on, and what was built from the older state is stale."""
        self._drop(lambda key: key[0] == task_id)

    def is_prefetched(self, path: str, task_id: str | None = None) -> bool:
        """Whether ``path`` has a built entry for ``task_id`` (does not count as a request)."""
        with self._cond:
            return (task_id, path) in self._entries

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Block until the queue is empty and nothing is building; False on timeout."""
        with self._cond:
            return self._cond.wait_for(lambda: not self._queue and self._building is None, timeout)

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

    def _drop(self, matches: Callable[[Key], bool]) -> None:
        with self._cond:
            for key in [k for k in self._entries if matches(k)]:
                del self._entries[key]
            if self._building is not None and matches(self._building):
                self._building_stale = True

    def _run(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._queue or self._closed)
                if self._closed:
                    return
                generation, key = self._queue.popleft()
                if generation != self._generation:  # superseded while it waited
                    self.counts["stale"] += 1
                    self._cond.notify_all()
                    continue
                self._building, self._building_stale = key, False
            try:
                entry = self._build(key[1], key[0])
                ok = True
            except Exception as exc:  # a failing build must not kill the worker
                log.warning("prefetch of %s failed (%s); it will be built on request instead", key[1], exc)
                ok = False
            with self._cond:
                if not ok:
                    self.counts["failed"] += 1
                elif self._building_stale:  # built from a state that changed while it ran
                    self.counts["stale"] += 1
                else:
                    self._entries[key] = entry
                    self._entries.move_to_end(key)
                    while len(self._entries) > self.max_entries:
                        self._entries.popitem(last=False)
                    self.counts["built"] += 1
                self._building = None
                self._cond.notify_all()
