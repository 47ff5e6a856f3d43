"""One cached value with what it was built from: compact bytes, age, use counts and file versions."""

from __future__ import annotations

import zlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import msgpack

#: Keep the compressed form only when it is smaller than this fraction of the raw bytes.
COMPRESS_RATIO = 0.9
#: zlib level: 6 is zlib's own default, a good speed/size balance for text.
_ZLIB_LEVEL = 6
#: Dependency names starting with this stand for a task's event sequence, not a file.
TASK_PREFIX = "task:"

#: A file version (``files.version``) or content hash (``files.hash``); compared for equality only.
Version = int | str


#: Dependency name standing for the index generation: entries that depend on the whole index
#: (search results, overviews) record it, so any index pass that changed something retires them.
INDEX_DEP = "index:generation"
#: Paths per ``IN (...)`` query (below SQLite's default variable limit).
_SQL_CHUNK = 500


def index_versions(conn, paths: Iterable[str], *, column: str = "version") -> dict[str, Version]:
    """Current {path: files.<column>} of ``paths`` in an index database (``INDEX_DEP``: the generation).

    ``column="hash"`` (the content hash) stays exact across processes with separate
    indexes and across delete/re-create; ``"version"`` is a per-index counter.
    """
    if column not in ("version", "hash"):
        raise ValueError(f"cannot read file versions from column {column!r}: use 'version' or 'hash'")
    wanted = list(dict.fromkeys(paths))
    found: dict[str, Version] = {}
    if INDEX_DEP in wanted:
        row = conn.execute("SELECT value FROM meta WHERE key='generation'").fetchone()
        found[INDEX_DEP] = int(row[0]) if row else 0
    files = [p for p in wanted if p != INDEX_DEP and not p.startswith(TASK_PREFIX)]
    for start in range(0, len(files), _SQL_CHUNK):
        chunk = files[start:start + _SQL_CHUNK]
        marks = ",".join("?" * len(chunk))
        found.update(conn.execute(f"SELECT path, {column} FROM files WHERE path IN ({marks})", chunk))
    return found


def task_dep(task_id: str) -> str:
    """The dependency name under which an entry records a task's event sequence number."""
    return f"{TASK_PREFIX}{task_id}"


def encode_value(value: Any) -> tuple[bytes, bool]:
    """msgpack ``value``; zlib it only when that saves at least 10%. Returns (payload, compressed)."""
    raw = msgpack.packb(value, use_bin_type=True)
    packed = zlib.compress(raw, _ZLIB_LEVEL)
    if len(packed) < COMPRESS_RATIO * len(raw):
        return packed, True
    return raw, False


def decode_value(payload: bytes, compressed: bool) -> Any:
    """The value ``encode_value`` packed."""
    raw = zlib.decompress(payload) if compressed else payload
    return msgpack.unpackb(raw, raw=False, strict_map_key=False)


@dataclass(slots=True)
class Entry:
    """A cached value; ``deps`` maps each file (or ``task:<id>``) it was built from to the version it read."""

    key: str
    payload: bytes
    compressed: bool
    created_at: float
    ttl: float
    deps: dict[str, Version] = field(default_factory=dict)
    hits: int = 0
    last_access: float = 0.0

    @classmethod
    def build(cls, key: str, value: Any, *, now: float, ttl: float, deps: dict[str, Version] | None = None) -> "Entry":
        """Encode ``value`` into a fresh entry created at ``now``."""
        payload, compressed = encode_value(value)
        return cls(key, payload, compressed, now, ttl, dict(deps or {}), 0, now)

    @property
    def size(self) -> int:
        """Bytes this entry counts against its tier's limit (the stored payload)."""
        return len(self.payload)

    @property
    def task_seq(self) -> dict[str, int]:
        """The task event sequence numbers this entry was built at, by task id."""
        return {k[len(TASK_PREFIX):]: v for k, v in self.deps.items() if k.startswith(TASK_PREFIX)}

    def value(self) -> Any:
        """The decoded value."""
        return decode_value(self.payload, self.compressed)

    def expired(self, now: float) -> bool:
        """Older than its TTL."""
        return now - self.created_at >= self.ttl

    def is_current(self, current: dict[str, Version]) -> bool:
        """Every recorded version equals the current one (a vanished file never does)."""
        return all(current.get(path) == version for path, version in self.deps.items())

    def pack(self) -> bytes:
        """The whole entry as one msgpack blob (for Redis)."""
        return msgpack.packb([self.key, self.payload, self.compressed, self.created_at, self.ttl, self.deps,
                              self.hits, self.last_access], use_bin_type=True)

    @classmethod
    def unpack(cls, blob: bytes) -> "Entry":
        """The entry ``pack`` wrote."""
        key, payload, compressed, created, ttl, deps, hits, last = msgpack.unpackb(blob, raw=False,
                                                                                   strict_map_key=False)
        return cls(key, payload, compressed, created, ttl, deps, hits, last)
