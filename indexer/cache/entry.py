"""One cached value with what it was built from: compact bytes, age, use counts and file versions."""

from __future__ import annotations

import zlib
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
