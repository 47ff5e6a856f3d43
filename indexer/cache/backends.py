"""Where entries live: memory (per process), SQLite (survives restarts), Redis (shared by a team).

Each backend keeps a dependency index from path to the entries built from it, so a
file change finds its dependents by lookup, never by scanning all entries.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import NamedTuple, Protocol

import msgpack

from indexer.cache.entry import Entry

#: Access counters (hits, last access) are written back with the next put, or when this many are waiting:
#: a hit then costs no write (the counters only steer eviction, so a crash losing a few is harmless).
_TOUCH_BATCH = 1024
#: Separator between tier and key in Redis dependency sets (never appears in a key).
_SEP = "\x1f"
#: Extra seconds Redis keeps an entry past its TTL, so the cache's own clock decides expiry.
_REDIS_TTL_MARGIN = 60


class Meta(NamedTuple):
    """What eviction needs to know of an entry, without its payload."""

    key: str
    size: int
    hits: int
    last_access: float


class Backend(Protocol):
    """Storage for entries of all tiers plus the path -> entries dependency index."""

    def get(self, tier: str, key: str) -> Entry | None:
        """The entry, or None."""

    def put(self, tier: str, entry: Entry) -> int:
        """Store ``entry``; returns the size of the one it replaced (0 if none)."""

    def delete(self, tier: str, keys: Iterable[str]) -> tuple[int, int]:
        """Remove keys; returns (entries, bytes) removed."""

    def touch(self, tier: str, entry: Entry) -> None:
        """Record the entry's new hits / last access (may be batched)."""

    def dependents(self, paths: Iterable[str]) -> set[tuple[str, str]]:
        """(tier, key) of entries built from any of the paths."""

    def meta(self, tier: str) -> list[Meta]:
        """Every entry of a tier, without payloads, for eviction."""

    def usage(self, tier: str) -> tuple[int, int]:
        """(entries, bytes) of a tier."""

    def flush(self) -> None:
        """Write batched access counters."""

    def close(self) -> None:
        """Flush and release resources."""


class MemoryBackend:
    """Entries in dicts of this process: the fastest backend, gone on exit."""

    def __init__(self) -> None:
        self._tiers: dict[str, dict[str, Entry]] = {}
        self._bytes: dict[str, int] = {}
        self._by_path: dict[str, set[tuple[str, str]]] = {}

    def get(self, tier: str, key: str) -> Entry | None:
        """The entry, or None."""
        return self._tiers.get(tier, {}).get(key)

    def put(self, tier: str, entry: Entry) -> int:
        """Store ``entry`` and index its dependencies."""
        old = self._tiers.get(tier, {}).get(entry.key)
        old_size = 0
        if old is not None:
            old_size = old.size
            self._delete_one(tier, old)
        self._tiers.setdefault(tier, {})[entry.key] = entry
        self._bytes[tier] = self._bytes.get(tier, 0) + entry.size
        for path in entry.deps:
            self._by_path.setdefault(path, set()).add((tier, entry.key))
        return old_size

    def _delete_one(self, tier: str, entry: Entry) -> None:
        del self._tiers[tier][entry.key]
        self._bytes[tier] -= entry.size
        for path in entry.deps:
            keys = self._by_path.get(path)
            if keys is not None:
                keys.discard((tier, entry.key))
                if not keys:
                    del self._by_path[path]

    def delete(self, tier: str, keys: Iterable[str]) -> tuple[int, int]:
        """Remove keys; returns (entries, bytes) removed."""
        count = size = 0
        entries = self._tiers.get(tier, {})
        for key in keys:
            entry = entries.get(key)
            if entry is not None:
                count, size = count + 1, size + entry.size
                self._delete_one(tier, entry)
        return count, size

    def touch(self, tier: str, entry: Entry) -> None:
        """Nothing to do: the stored object is the one the cache updated."""

    def dependents(self, paths: Iterable[str]) -> set[tuple[str, str]]:
        """(tier, key) of entries built from any of ``paths``."""
        found: set[tuple[str, str]] = set()
        for path in paths:
            found |= self._by_path.get(path, set())
        return found

    def meta(self, tier: str) -> list[Meta]:
        """Every entry of a tier, without payloads."""
        return [Meta(e.key, e.size, e.hits, e.last_access) for e in self._tiers.get(tier, {}).values()]

    def usage(self, tier: str) -> tuple[int, int]:
        """(entries, bytes) of a tier."""
        return len(self._tiers.get(tier, {})), self._bytes.get(tier, 0)

    def flush(self) -> None:
        """Nothing is batched in memory."""

    def close(self) -> None:
        """Drop everything."""
        self._tiers.clear()
        self._bytes.clear()
        self._by_path.clear()


_SCHEMA = """
CREATE TABLE IF NOT EXISTS cache_entries (
    tier TEXT NOT NULL, key TEXT NOT NULL, payload BLOB NOT NULL, compressed INTEGER NOT NULL,
    created_at REAL NOT NULL, ttl REAL NOT NULL, deps BLOB NOT NULL, hits INTEGER NOT NULL,
    last_access REAL NOT NULL, size INTEGER NOT NULL, PRIMARY KEY (tier, key)) WITHOUT ROWID;
-- Which entries were built from which path: invalidation is a lookup by path.
CREATE TABLE IF NOT EXISTS cache_deps (
    path TEXT NOT NULL, tier TEXT NOT NULL, key TEXT NOT NULL, PRIMARY KEY (path, tier, key)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS cache_deps_entry ON cache_deps(tier, key);
"""


class SqliteBackend:
    """Entries in SQLite tables (``cache_entries``, ``cache_deps``): the default, survives restarts.

    Pass a file path (a connection of its own, WAL) or an open connection, e.g. the
    index database's writer; the tables are created if missing either way.
    """

    def __init__(self, target: str | Path | sqlite3.Connection) -> None:
        if isinstance(target, (str, Path)):
            self._conn = sqlite3.connect(str(target), check_same_thread=False)
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=NORMAL")
            self._owned = True
        else:
            self._conn, self._owned = target, False
        self._lock = threading.RLock()
        self._touches: dict[tuple[str, str], tuple[int, float]] = {}
        with self._lock, self._conn:
            for statement in _statements(_SCHEMA):
                self._conn.execute(statement)

    def get(self, tier: str, key: str) -> Entry | None:
        """The entry, or None (batched access counters applied)."""
        with self._lock:
            row = self._conn.execute(
                "SELECT payload, compressed, created_at, ttl, deps, hits, last_access FROM cache_entries"
                " WHERE tier=? AND key=?", (tier, key)).fetchone()
            if row is None:
                return None
            payload, compressed, created, ttl, deps, hits, last = row
            hits, last = self._touches.get((tier, key), (hits, last))
            return Entry(key, payload, bool(compressed), created, ttl,
                         msgpack.unpackb(deps, raw=False, strict_map_key=False), hits, last)

    def put(self, tier: str, entry: Entry) -> int:
        """Store ``entry`` and its dependency rows in one transaction (batched counters written first)."""
        self.flush()
        with self._lock, self._conn:
            old = self._conn.execute("SELECT size FROM cache_entries WHERE tier=? AND key=?",
                                     (tier, entry.key)).fetchone()
            if old is not None:
                self._conn.execute("DELETE FROM cache_deps WHERE tier=? AND key=?", (tier, entry.key))
            self._touches.pop((tier, entry.key), None)
            self._conn.execute(
                "INSERT OR REPLACE INTO cache_entries VALUES (?,?,?,?,?,?,?,?,?,?)",
                (tier, entry.key, entry.payload, int(entry.compressed), entry.created_at, entry.ttl,
                 msgpack.packb(entry.deps, use_bin_type=True), entry.hits, entry.last_access, entry.size))
            self._conn.executemany("INSERT OR IGNORE INTO cache_deps VALUES (?,?,?)",
                                   [(path, tier, entry.key) for path in entry.deps])
            return old[0] if old else 0

    def delete(self, tier: str, keys: Iterable[str]) -> tuple[int, int]:
        """Remove keys and their dependency rows; returns (entries, bytes) removed."""
        count = size = 0
        with self._lock, self._conn:
            for key in keys:
                row = self._conn.execute("DELETE FROM cache_entries WHERE tier=? AND key=? RETURNING size",
                                         (tier, key)).fetchone()
                if row is not None:
                    count, size = count + 1, size + row[0]
                    self._conn.execute("DELETE FROM cache_deps WHERE tier=? AND key=?", (tier, key))
                self._touches.pop((tier, key), None)
        return count, size

    def touch(self, tier: str, entry: Entry) -> None:
        """Remember the new counters; written in batches so a hit costs no write."""
        with self._lock:
            self._touches[(tier, entry.key)] = (entry.hits, entry.last_access)
            if len(self._touches) >= _TOUCH_BATCH:
                self.flush()

    def dependents(self, paths: Iterable[str]) -> set[tuple[str, str]]:
        """(tier, key) of entries built from any of ``paths``, through the ``cache_deps`` index."""
        found: set[tuple[str, str]] = set()
        with self._lock:
            for path in paths:
                found.update(self._conn.execute("SELECT tier, key FROM cache_deps WHERE path=?", (path,)))
        return found

    def meta(self, tier: str) -> list[Meta]:
        """Every entry of a tier, without payloads."""
        with self._lock:
            self.flush()
            return [Meta(*row) for row in self._conn.execute(
                "SELECT key, size, hits, last_access FROM cache_entries WHERE tier=?", (tier,))]

    def usage(self, tier: str) -> tuple[int, int]:
        """(entries, bytes) of a tier."""
        with self._lock:
            count, size = self._conn.execute(
                "SELECT count(*), coalesce(sum(size), 0) FROM cache_entries WHERE tier=?", (tier,)).fetchone()
            return count, size

    def flush(self) -> None:
        """Write the batched access counters."""
        with self._lock:
            if not self._touches:
                return
            rows = [(hits, last, tier, key) for (tier, key), (hits, last) in self._touches.items()]
            self._touches.clear()
            with self._conn:
                self._conn.executemany("UPDATE cache_entries SET hits=?, last_access=? WHERE tier=? AND key=?", rows)

    def close(self) -> None:
        """Flush; close the connection only if this backend opened it."""
        self.flush()
        if self._owned:
            self._conn.close()


def _statements(script: str) -> list[str]:
    """The statements of a schema script, run one by one (executescript would commit a caller's transaction)."""
    lines = [line for line in script.splitlines() if not line.lstrip().startswith("--")]
    return [s.strip() for s in "\n".join(lines).split(";") if s.strip()]


class RedisBackend:
    """Entries in Redis, shared by every process pointed at the same server and namespace.

    Layout under ``{namespace}``: ``:e:{tier}:{key}`` the packed entry (with a Redis TTL),
    ``:m:{tier}`` a hash key -> [size, hits, last_access, expires_at] for eviction, and
    ``:d:{path}`` a set of ``tier\\x1fkey`` for invalidation. Raises ``redis.RedisError``
    when the server is unreachable: ``shared.SharedCache`` turns that into a fallback.
    """

    def __init__(self, client, namespace: str = "codeahead") -> None:
        self._r = client
        self._ns = namespace
        self._touches: dict[tuple[str, str], tuple[int, float]] = {}

    def _e(self, tier: str, key: str) -> str:
        return f"{self._ns}:e:{tier}:{key}"

    def _m(self, tier: str) -> str:
        return f"{self._ns}:m:{tier}"

    def _d(self, path: str) -> str:
        return f"{self._ns}:d:{path}"

    def get(self, tier: str, key: str) -> Entry | None:
        """The entry, or None."""
        blob = self._r.get(self._e(tier, key))
        if blob is None:
            return None
        entry = Entry.unpack(blob)
        entry.hits, entry.last_access = self._touches.get((tier, key), (entry.hits, entry.last_access))
        return entry

    def put(self, tier: str, entry: Entry) -> int:
        """Store ``entry`` with a Redis TTL, its eviction metadata and dependency set members."""
        self.flush()
        old = self._r.hget(self._m(tier), entry.key)
        seconds = int(entry.ttl) + _REDIS_TTL_MARGIN
        pipe = self._r.pipeline(transaction=True)
        pipe.set(self._e(tier, entry.key), entry.pack(), ex=seconds)
        pipe.hset(self._m(tier), entry.key, _pack_meta(entry))
        for path in entry.deps:
            pipe.sadd(self._d(path), f"{tier}{_SEP}{entry.key}")
            pipe.expire(self._d(path), seconds, gt=True)
            pipe.expire(self._d(path), seconds, nx=True)
        pipe.execute()
        self._touches.pop((tier, entry.key), None)
        return msgpack.unpackb(old)[0] if old else 0

    def delete(self, tier: str, keys: Iterable[str]) -> tuple[int, int]:
        """Remove keys (dependency set members go stale harmlessly and expire); returns (entries, bytes)."""
        keys = list(keys)
        if not keys:
            return 0, 0
        metas = self._r.hmget(self._m(tier), keys)
        pipe = self._r.pipeline(transaction=True)
        pipe.delete(*[self._e(tier, k) for k in keys])
        pipe.hdel(self._m(tier), *keys)
        removed = pipe.execute()[0]
        for key in keys:
            self._touches.pop((tier, key), None)
        return removed, sum(msgpack.unpackb(m)[0] for m in metas if m)

    def touch(self, tier: str, entry: Entry) -> None:
        """Remember the new counters; written in batches so a hit costs one round trip."""
        self._touches[(tier, entry.key)] = (entry.hits, entry.last_access)
        if len(self._touches) >= _TOUCH_BATCH:
            self.flush()

    def dependents(self, paths: Iterable[str]) -> set[tuple[str, str]]:
        """(tier, key) of entries built from any of ``paths``."""
        paths = list(paths)
        if not paths:
            return set()
        members = self._r.sunion([self._d(p) for p in paths])
        return {tuple(m.decode("utf-8").split(_SEP, 1)) for m in members}

    def meta(self, tier: str) -> list[Meta]:
        """Every live entry of a tier; metadata of entries Redis already expired is dropped on the way."""
        self.flush()
        now_server = float(self._r.time()[0])
        live, dead = [], []
        for key, blob in self._r.hgetall(self._m(tier)).items():
            size, hits, last, expires = msgpack.unpackb(blob)
            (dead if expires < now_server else live).append(Meta(key.decode("utf-8"), size, hits, last))
        if dead:
            self._r.hdel(self._m(tier), *[m.key for m in dead])
        return live

    def usage(self, tier: str) -> tuple[int, int]:
        """(entries, bytes) of a tier, from the metadata hash."""
        metas = self.meta(tier)
        return len(metas), sum(m.size for m in metas)

    def flush(self) -> None:
        """Write the batched access counters (only for entries still present)."""
        if not self._touches:
            return
        touches, self._touches = self._touches, {}
        by_tier: dict[str, list[tuple[str, int, float]]] = {}
        for (tier, key), (hits, last) in touches.items():
            by_tier.setdefault(tier, []).append((key, hits, last))
        for tier, rows in by_tier.items():
            metas = self._r.hmget(self._m(tier), [k for k, _, _ in rows])
            update = {}
            for (key, hits, last), blob in zip(rows, metas):
                if blob:
                    size, _, _, expires = msgpack.unpackb(blob)
                    update[key] = msgpack.packb([size, hits, last, expires])
            if update:
                self._r.hset(self._m(tier), mapping=update)

    def close(self) -> None:
        """Flush counters (best effort) and close the client."""
        try:
            self.flush()
        finally:
            self._r.close()


def _pack_meta(entry: Entry) -> bytes:
    """Eviction metadata; expiry in server-comparable wall seconds (Redis TTL margin included)."""
    return msgpack.packb([entry.size, entry.hits, entry.last_access, time.time() + entry.ttl + _REDIS_TTL_MARGIN])
