"""``TieredCache``: four tiers with TTLs, byte limits, exact invalidation, hybrid eviction and refresh.

Exactness: an entry records the version of every file it was built from (read *before*
the build, so a change during the build leaves an older version on record). ``lookup``
compares them with the current versions and never serves a mismatch, whatever the TTL;
``invalidate_paths`` drops the dependents of changed files through the dependency index.

Eviction score (lowest evicted first), over the entries of one tier::

    recency   = (last_access - oldest_access) / (now - oldest_access)      in [0, 1]
    frequency = log1p(hits) / log1p(max_hits)                               in [0, 1]
    score     = recency_weight * recency + frequency_weight * frequency     (0.6 / 0.4)
"""

from __future__ import annotations

import logging
import math
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from indexer.cache.backends import Backend, Meta, MemoryBackend
from indexer.cache.entry import Entry, Version

log = logging.getLogger(__name__)

_HOUR = 3600.0
_MB = 1024 * 1024
#: Hot entries are rebuilt in the background once this fraction of their TTL has passed.
REFRESH_AT = 0.8
#: An entry hit at least this many times counts as hot.
HOT_HITS = 2
#: Rebuilds waiting at most; more are dropped (the entry simply expires and is rebuilt on demand).
REFRESH_QUEUE = 64
#: Get latencies kept per tier for the percentiles.
LATENCY_SAMPLES = 4096
#: Seconds between two points of the hit-rate history, and points kept (a day of minutes).
HISTORY_INTERVAL = 60.0
HISTORY_SIZE = 1440

#: Returned by ``get`` on a miss (a cached value may itself be ``None``).
MISSING: Any = object()

Versions = Callable[[Iterable[str]], Mapping[str, Version]]
Deps = Mapping[str, Version] | Callable[[], Mapping[str, Version]]


@dataclass(frozen=True, slots=True)
class TierConfig:
    """One tier: its name, default TTL in seconds and byte limit."""

    name: str
    ttl: float
    max_bytes: int


#: L1 prompt (rendered prompts, tool answers), L2 module summaries, L3 packed contexts, L4 search results.
DEFAULT_TIERS: tuple[TierConfig, ...] = (
    TierConfig("prompt", 24 * _HOUR, 10 * _MB),
    TierConfig("module", 12 * _HOUR, 50 * _MB),
    TierConfig("context", 6 * _HOUR, 100 * _MB),
    TierConfig("results", 1 * _HOUR, 200 * _MB),
)


@dataclass(slots=True)
class _TierStats:
    """Counters of one tier since the cache was opened."""

    hits: int = 0
    misses: int = 0
    evictions: int = 0
    expired: int = 0
    stale: int = 0  # refused on read: a recorded file version differs from the current one
    invalidated: int = 0  # dropped through the dependency index
    too_large: int = 0
    latencies_us: deque = field(default_factory=lambda: deque(maxlen=LATENCY_SAMPLES))
    window_hits: int = 0
    window_misses: int = 0


def _percentile(samples: list[float], fraction: float) -> float:
    """Nearest-rank percentile of sorted ``samples`` (0.0 when empty)."""
    if not samples:
        return 0.0
    return samples[min(len(samples) - 1, max(0, math.ceil(fraction * len(samples)) - 1))]


def eviction_order(metas: list[Meta], now: float, recency_weight: float, frequency_weight: float) -> list[Meta]:
    """Entries from first to last to evict, by the hybrid recency/frequency score of the module docstring."""
    if not metas:
        return []
    oldest = min(m.last_access for m in metas)
    span = now - oldest
    top = math.log1p(max(m.hits for m in metas))

    def score(m: Meta) -> tuple[float, float]:
        recency = (m.last_access - oldest) / span if span > 0 else 1.0
        frequency = math.log1p(m.hits) / top if top > 0 else 0.0
        return recency_weight * recency + frequency_weight * frequency, m.last_access

    return sorted(metas, key=score)


class TieredCache:
    """Tiers over one backend; thread-safe; ``clock`` is injectable (seconds, e.g. ``time.time``).

    ``drop_stale=False`` refuses a stale entry without deleting it (for a tier shared by
    processes whose files may be at other versions; it is overwritten when rebuilt).
    """

    def __init__(self, backend: Backend | None = None, *, tiers: Iterable[TierConfig] = DEFAULT_TIERS,
                 versions: Versions | None = None, clock: Callable[[], float] = time.time,
                 recency_weight: float = 0.6, frequency_weight: float = 0.4, refresh: bool = True,
                 refresh_queue: int = REFRESH_QUEUE, history_interval: float = HISTORY_INTERVAL,
                 history_size: int = HISTORY_SIZE, drop_stale: bool = True) -> None:
        self.backend: Backend = backend if backend is not None else MemoryBackend()
        self.tiers = {t.name: t for t in tiers}
        self._versions = versions
        # A shared tier keeps entries other processes (with other file versions) may still use.
        self._drop_stale = drop_stale
        self._clock = clock
        self._weights = (recency_weight, frequency_weight)
        self._lock = threading.RLock()
        self._stats = {name: _TierStats() for name in self.tiers}
        self._bytes = {name: self.backend.usage(name)[1] for name in self.tiers}
        self._history: deque = deque(maxlen=history_size)
        self._history_interval = history_interval
        self._last_sample = clock()
        self._rebuilders: dict[tuple[str, str], Callable[[], tuple[Any, Mapping[str, Version]]]] = {}
        self._refresh_counts = {"queued": 0, "done": 0, "dropped": 0, "failed": 0}
        self._pending: set[tuple[str, str]] = set()
        self._done: deque = deque()
        self._queue: queue.Queue | None = None
        self._thread: threading.Thread | None = None
        if refresh:
            self._queue = queue.Queue(maxsize=refresh_queue)
            self._thread = threading.Thread(target=self._refresh_loop, name="codeahead-cache-refresh", daemon=True)
            self._thread.start()

    @property
    def clock(self) -> Callable[[], float]:
        """The clock entries are timed by (shared tiers reuse it)."""
        return self._clock

    # ------------------------------------------------------------------ #
    # reads
    # ------------------------------------------------------------------ #
    def lookup(self, tier: str, key: str, current_versions: Versions | None = None, *,
               count: bool = True) -> Entry | None:
        """The entry if present, unexpired and built from the current file versions; else None (a miss).

        ``count=False``: the program's own look (a prefetch checking what is built), not a request: no hit or
        miss is counted, and the entry's recency and frequency stay as the requests left them."""
        config = self._tier(tier)
        started = time.perf_counter()
        with self._lock:
            self._apply_refreshed()
            now = self._clock()
            stats = self._stats[tier]
            entry = self.backend.get(tier, key)
            if entry is not None and entry.expired(now):
                stats.expired += 1
                self._drop(tier, [key])
                entry = None
            if entry is not None and entry.deps and not entry.is_current(
                    dict(self._current(current_versions)(entry.deps.keys()))):
                stats.stale += 1
                if self._drop_stale:
                    self._drop(tier, [key])
                entry = None
            if not count:
                return entry
            if entry is None:
                stats.misses += 1
                stats.window_misses += 1
            else:
                stats.hits += 1
                stats.window_hits += 1
                entry.hits += 1
                entry.last_access = now
                self.backend.touch(tier, entry)
                self._maybe_refresh(tier, entry, config, now)
            stats.latencies_us.append((time.perf_counter() - started) * 1e6)
            if now - self._last_sample >= self._history_interval:
                self.sample_history(now)
            return entry

    def get(self, tier: str, key: str, current_versions: Versions | None = None, default: Any = MISSING, *,
            count: bool = True) -> Any:
        """The cached value (see ``lookup``), or ``default`` (``MISSING``) on a miss."""
        entry = self.lookup(tier, key, current_versions, count=count)
        return default if entry is None else entry.value()

    def get_or_build(self, tier: str, key: str, build: Callable[[], Any], deps: Deps,
                     current_versions: Versions | None = None, *, ttl: float | None = None) -> Any:
        """The cached value, or ``build()`` stored under ``key``.

        ``deps`` is the {path: version} the build reads, or a callable returning it that is
        called *before* each build; only the callable form enables background refresh.
        """
        value = self.get(tier, key, current_versions)
        if value is not MISSING:
            return value
        if callable(deps):
            def rebuild() -> tuple[Any, Mapping[str, Version]]:
                recorded = dict(deps())  # read before building: a concurrent edit leaves an older version
                return build(), recorded

            value, recorded = rebuild()
            self.put(tier, key, value, recorded, ttl=ttl, rebuild=rebuild)
        else:
            value = build()
            self.put(tier, key, value, deps, ttl=ttl)
        return value

    # ------------------------------------------------------------------ #
    # writes
    # ------------------------------------------------------------------ #
    def put(self, tier: str, key: str, value: Any, deps: Mapping[str, Version] | None = None, *,
            ttl: float | None = None, rebuild: Callable[[], tuple[Any, Mapping[str, Version]]] | None = None
            ) -> Entry:
        """Store ``value`` built from files at ``deps`` versions; ``rebuild`` enables background refresh."""
        config = self._tier(tier)
        entry = Entry.build(key, value, now=self._clock(), ttl=config.ttl if ttl is None else ttl,
                            deps=dict(deps or {}))
        self.put_entry(tier, entry, rebuild=rebuild)
        return entry

    def put_entry(self, tier: str, entry: Entry, *, rebuild=None) -> None:
        """Store a ready entry (e.g. one read from a shared tier), evicting to stay within the byte limit."""
        config = self._tier(tier)
        with self._lock:
            self._apply_refreshed()
            self._store(tier, entry, config, rebuild)

    def invalidate_paths(self, paths: Iterable[str]) -> int:
        """Drop exactly the entries built from any of ``paths`` (found via the dependency index); returns how many."""
        with self._lock:
            dropped = 0
            by_tier: dict[str, list[str]] = {}
            for tier, key in self.backend.dependents(list(paths)):
                by_tier.setdefault(tier, []).append(key)
            for tier, keys in by_tier.items():
                if tier in self._stats:
                    count = self._drop(tier, keys)
                    self._stats[tier].invalidated += count
                    dropped += count
            return dropped

    def delete(self, tier: str, key: str) -> bool:
        """Drop one entry; True if it was there."""
        with self._lock:
            return self._drop(self._tier(tier).name, [key]) > 0

    # ------------------------------------------------------------------ #
    # observability
    # ------------------------------------------------------------------ #
    def stats(self) -> dict[str, Any]:
        """Per tier: hits, misses, hit rate, evictions, bytes, entries, get latency p50/p95 (µs); refresh counts."""
        with self._lock:
            tiers = {}
            for name, s in self._stats.items():
                entries, size = self.backend.usage(name)
                lat = sorted(s.latencies_us)
                total = s.hits + s.misses
                tiers[name] = {
                    "hits": s.hits, "misses": s.misses, "hit_rate": s.hits / total if total else 0.0,
                    "evictions": s.evictions, "expired": s.expired, "stale": s.stale,
                    "invalidated": s.invalidated, "too_large": s.too_large, "bytes": size, "entries": entries,
                    "max_bytes": self.tiers[name].max_bytes, "ttl": self.tiers[name].ttl,
                    "latency_us": {"p50": _percentile(lat, 0.5), "p95": _percentile(lat, 0.95)},
                }
            return {"tiers": tiers, "refresh": dict(self._refresh_counts)}

    def stored_hits(self) -> dict[str, int]:
        """Per tier, the hits the entries in the store have served, counted by every process that shares it (as
        their counters were last written; an evicted entry takes its count with it). ``stats`` counts only this
        process's lookups, which a short-lived command never makes."""
        with self._lock:
            return {name: sum(m.hits for m in self.backend.meta(name)) for name in self.tiers}

    def sample_history(self, now: float | None = None) -> tuple[float, dict[str, float | None]]:
        """Append (time, hit rate per tier since the last point; None without requests) to the history ring."""
        with self._lock:
            now = self._clock() if now is None else now
            rates: dict[str, float | None] = {}
            for name, s in self._stats.items():
                total = s.window_hits + s.window_misses
                rates[name] = s.window_hits / total if total else None
                s.window_hits = s.window_misses = 0
            point = (now, rates)
            self._history.append(point)
            self._last_sample = now
            return point

    def history(self) -> list[tuple[float, dict[str, float | None]]]:
        """The hit-rate history ring, oldest first (for the dashboard)."""
        with self._lock:
            return list(self._history)

    # ------------------------------------------------------------------ #
    # background refresh
    # ------------------------------------------------------------------ #
    def drain_refresh(self, timeout: float = 5.0) -> None:
        """Wait until queued rebuilds ran and store their results (for tests and shutdown)."""
        deadline = time.monotonic() + timeout
        while self._queue is not None and self._queue.unfinished_tasks and time.monotonic() < deadline:
            time.sleep(0.001)
        with self._lock:
            self._apply_refreshed()

    def close(self) -> None:
        """Stop the refresher and flush the backend's batched counters."""
        if self._queue is not None and self._thread is not None:
            self._queue.put(None)
            self._thread.join(timeout=5)
            self._queue = None
        with self._lock:
            self.backend.flush()

    def _maybe_refresh(self, tier: str, entry: Entry, config: TierConfig, now: float) -> None:
        rebuild = self._rebuilders.get((tier, entry.key))
        if (self._queue is None or rebuild is None or entry.hits < HOT_HITS
                or now - entry.created_at < REFRESH_AT * entry.ttl or (tier, entry.key) in self._pending):
            return
        try:
            self._queue.put_nowait((tier, entry.key, rebuild))
        except queue.Full:
            self._refresh_counts["dropped"] += 1
            return
        self._pending.add((tier, entry.key))
        self._refresh_counts["queued"] += 1

    def _refresh_loop(self) -> None:
        """Run rebuilds off the request path; results are stored by the next cache call (its own thread)."""
        while True:
            job = self._queue.get()
            try:
                if job is None:
                    return
                tier, key, rebuild = job
                try:
                    value, deps = rebuild()
                    self._done.append((tier, key, value, dict(deps), rebuild))
                except Exception as exc:  # a failed rebuild leaves the entry to expire normally
                    log.warning("cache refresh of %s/%s failed: %s; it will be rebuilt on demand", tier, key, exc)
                    with self._lock:
                        self._refresh_counts["failed"] += 1
                        self._pending.discard((tier, key))
            finally:
                self._queue.task_done()

    def _apply_refreshed(self) -> None:
        while self._done:
            tier, key, value, deps, rebuild = self._done.popleft()
            self._pending.discard((tier, key))
            entry = Entry.build(key, value, now=self._clock(), ttl=self.tiers[tier].ttl, deps=deps)
            self._store(tier, entry, self.tiers[tier], rebuild)
            self._refresh_counts["done"] += 1

    # ------------------------------------------------------------------ #
    # internals
    # ------------------------------------------------------------------ #
    def _tier(self, tier: str) -> TierConfig:
        try:
            return self.tiers[tier]
        except KeyError:
            raise KeyError(f"unknown cache tier {tier!r}: use one of {sorted(self.tiers)}") from None

    def _current(self, current_versions: Versions | None) -> Versions:
        found = current_versions or self._versions
        if found is None:
            raise ValueError("cache lookup of an entry with file dependencies needs current versions: "
                             "pass current_versions or TieredCache(versions=...)")
        return found

    def _store(self, tier: str, entry: Entry, config: TierConfig, rebuild) -> None:
        if entry.size > config.max_bytes:
            self._stats[tier].too_large += 1
            return
        replaced = self.backend.put(tier, entry)
        self._bytes[tier] += entry.size - replaced
        if rebuild is not None:
            self._rebuilders[(tier, entry.key)] = rebuild
        else:
            self._rebuilders.pop((tier, entry.key), None)
        if self._bytes[tier] > config.max_bytes:
            self._evict(tier, entry.key, config)

    def _evict(self, tier: str, keep: str, config: TierConfig) -> None:
        """Evict lowest-scored entries (never the one just stored) until the tier fits its limit."""
        metas = self.backend.meta(tier)
        self._bytes[tier] = sum(m.size for m in metas)  # authoritative (a shared backend has other writers)
        victims = []
        excess = self._bytes[tier] - config.max_bytes
        for m in eviction_order([m for m in metas if m.key != keep], self._clock(), *self._weights):
            if excess <= 0:
                break
            victims.append(m.key)
            excess -= m.size
        self._stats[tier].evictions += self._drop(tier, victims)

    def _drop(self, tier: str, keys: list[str]) -> int:
        count, size = self.backend.delete(tier, keys)
        self._bytes[tier] = max(0, self._bytes[tier] - size)
        for key in keys:
            self._rebuilders.pop((tier, key), None)
        return count
