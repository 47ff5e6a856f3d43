"""``SharedCache``: a local tier (memory or SQLite) in front of a Redis tier shared by a team.

Reads try local, then Redis (a shared hit is copied into the local tier). Both tiers check
recorded file versions on read, so an entry invalidated while Redis was unreachable is
still never served: invalidations made then are also replayed when Redis comes back.
If Redis goes away, every call keeps working from the local tier; the shared tier is
retried with exponential backoff and comes back by itself.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from indexer.cache.backends import RedisBackend
from indexer.cache.entry import Version
from indexer.cache.tiers import MISSING, Deps, TieredCache, Versions

log = logging.getLogger(__name__)

#: First wait before retrying an unreachable Redis, and the cap of the doubling backoff (seconds).
BACKOFF_INITIAL = 0.5
BACKOFF_MAX = 30.0
#: Socket timeouts: a dead Redis must cost a request milliseconds, not the client's default 5 s.
SOCKET_TIMEOUT = 0.25
#: Paths invalidated while Redis was down that are replayed on reconnect, at most (then: versions on read).
PENDING_PATHS = 10_000


def redis_client(url: str, *, timeout: float = SOCKET_TIMEOUT):
    """A redis-py client that fails fast (no retries): the caller falls back instead of waiting."""
    try:
        import redis
        from redis.backoff import NoBackoff
        from redis.retry import Retry
    except ImportError as exc:
        raise RuntimeError(f"cannot use the Redis cache {url}: the redis package is missing; "
                           "install codeahead[redis]") from exc
    return redis.Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout,
                                retry=Retry(NoBackoff(), 0))


class SharedCache:
    """Local ``TieredCache`` + shared Redis ``TieredCache`` with the same tiers; same read/write API."""

    def __init__(self, local: TieredCache, redis_url: str, *, namespace: str = "codeahead",
                 versions: Versions | None = None, clock: Callable[[], float] = time.monotonic,
                 backoff_initial: float = BACKOFF_INITIAL, backoff_max: float = BACKOFF_MAX,
                 timeout: float = SOCKET_TIMEOUT) -> None:
        import redis

        self.local = local
        self._errors = (redis.RedisError, OSError)
        self._client = redis_client(redis_url, timeout=timeout)
        self._namespace = namespace
        self._versions = versions
        self._tier_configs = list(local.tiers.values())
        self.shared = self._open_shared() if self._ping() else None
        self._clock = clock
        self._backoff_initial, self._backoff_max = backoff_initial, backoff_max
        self._backoff = backoff_initial
        self._retry_at = 0.0 if self.shared is not None else clock() + backoff_initial
        self._lock = threading.RLock()
        self._pending_paths: set[str] = set()
        self._pending_counts: dict[str, dict[str, int]] = {}
        self.outages = 0
        self.reconnects = 0

    # ------------------------------------------------------------------ #
    # cache API
    # ------------------------------------------------------------------ #
    def get(self, tier: str, key: str, current_versions: Versions | None = None, default: Any = MISSING) -> Any:
        """Local hit, else shared hit (copied to local), else ``default``."""
        versions = current_versions or self._versions
        entry = self.local.lookup(tier, key, versions)
        if entry is None:
            shared = self._shared()
            if shared is not None:
                try:
                    entry = shared.lookup(tier, key, versions)
                except self._errors as exc:
                    self._down(exc)
                if entry is not None:
                    self.local.put_entry(tier, entry)
        return default if entry is None else entry.value()

    def put(self, tier: str, key: str, value: Any, deps: Mapping[str, Version] | None = None, *,
            ttl: float | None = None, rebuild=None) -> None:
        """Store locally and, when Redis is up, in the shared tier."""
        entry = self.local.put(tier, key, value, deps, ttl=ttl, rebuild=rebuild)
        shared = self._shared()
        if shared is not None:
            try:
                shared.put_entry(tier, entry)
            except self._errors as exc:
                self._down(exc)

    def get_or_build(self, tier: str, key: str, build: Callable[[], Any], deps: Deps,
                     current_versions: Versions | None = None, *, ttl: float | None = None) -> Any:
        """The cached value from either tier, or ``build()`` stored in both (deps read before the build)."""
        value = self.get(tier, key, current_versions)
        if value is not MISSING:
            return value
        recorded = dict(deps() if callable(deps) else deps)
        value = build()
        self.put(tier, key, value, recorded, ttl=ttl)
        return value

    def invalidate_paths(self, paths: Iterable[str]) -> int:
        """Drop dependents locally and in Redis; while Redis is down, remember the paths to replay."""
        paths = list(paths)
        dropped = self.local.invalidate_paths(paths)
        shared = self._shared()
        if shared is not None:
            try:
                return dropped + shared.invalidate_paths(paths)
            except self._errors as exc:
                self._down(exc)
        with self._lock:
            if len(self._pending_paths) + len(paths) <= PENDING_PATHS:
                self._pending_paths.update(paths)
        return dropped

    # ------------------------------------------------------------------ #
    # shared prediction statistics
    # ------------------------------------------------------------------ #
    def incr_counts(self, name: str, mapping: Mapping[str, int]) -> None:
        """Add ``mapping`` to the shared counter hash ``name`` (kept locally while Redis is down)."""
        if self._shared() is not None:
            try:
                self._write_counts(name, mapping)
                return
            except self._errors as exc:
                self._down(exc)
        with self._lock:
            counts = self._pending_counts.setdefault(name, {})
            for field_name, n in mapping.items():
                counts[field_name] = counts.get(field_name, 0) + n

    def get_counts(self, name: str) -> dict[str, int]:
        """The shared counter hash ``name`` plus increments not yet written; local ones only while Redis is down."""
        with self._lock:
            result = dict(self._pending_counts.get(name, {}))
        if self._shared() is not None:
            try:
                for field_name, n in self._client.hgetall(self._counts_key(name)).items():
                    result[field_name.decode("utf-8")] = result.get(field_name.decode("utf-8"), 0) + int(n)
            except self._errors as exc:
                self._down(exc)
        return result

    # ------------------------------------------------------------------ #
    # state
    # ------------------------------------------------------------------ #
    @property
    def shared_up(self) -> bool:
        """Redis answered the last call (or the last reconnection attempt)."""
        return self.shared is not None

    def stats(self) -> dict[str, Any]:
        """Local stats, shared-tier stats (when up) and the connection state."""
        result = {"local": self.local.stats(), "shared_up": self.shared_up, "outages": self.outages,
                  "reconnects": self.reconnects, "pending_invalidations": len(self._pending_paths)}
        shared = self._shared()
        if shared is not None:
            try:
                result["shared"] = shared.stats()
            except self._errors as exc:
                self._down(exc)
        return result

    def close(self) -> None:
        """Close both tiers (the shared one best effort)."""
        self.local.close()
        try:
            self._client.close()
        except self._errors:
            pass

    def _counts_key(self, name: str) -> str:
        return f"{self._namespace}:counts:{name}"

    def _write_counts(self, name: str, mapping: Mapping[str, int]) -> None:
        pipe = self._client.pipeline(transaction=False)
        for field_name, n in mapping.items():
            pipe.hincrby(self._counts_key(name), field_name, int(n))
        pipe.execute()

    def _ping(self) -> bool:
        try:
            return bool(self._client.ping())
        except self._errors:
            return False

    def _shared(self) -> TieredCache | None:
        """The shared tier, reconnecting first when it is down and the backoff has elapsed."""
        if self.shared is not None:
            return self.shared
        with self._lock:
            if self.shared is not None or self._clock() < self._retry_at:
                return self.shared
            if not self._ping():
                self._backoff = min(self._backoff * 2, self._backoff_max)
                self._retry_at = self._clock() + self._backoff
                return None
            try:
                self._replay()
            except self._errors:
                self._retry_at = self._clock() + self._backoff
                return None
            self._backoff = self._backoff_initial
            self.reconnects += 1
            log.info("shared cache: Redis is back; serving the shared tier again")
            return self.shared

    def _open_shared(self) -> TieredCache:
        """The Redis tier: same tiers and clock as the local one; stale entries refused, not deleted."""
        return TieredCache(RedisBackend(self._client, self._namespace), tiers=self._tier_configs,
                           versions=self._versions, refresh=False, clock=self.local.clock, drop_stale=False)

    def _replay(self) -> None:
        """Apply what happened while Redis was down, then reopen the shared tier."""
        shared = self._open_shared()
        if self._pending_paths:
            shared.invalidate_paths(sorted(self._pending_paths))
        for name, mapping in self._pending_counts.items():
            self._write_counts(name, mapping)
        self._pending_paths.clear()
        self._pending_counts.clear()
        self.shared = shared

    def _down(self, exc: Exception) -> None:
        with self._lock:
            if self.shared is None:
                return
            log.warning("shared cache: Redis unreachable (%s); serving from the local tier, retrying in %.1f s",
                        exc, self._backoff)
            self.shared = None
            self.outages += 1
            self._retry_at = self._clock() + self._backoff
