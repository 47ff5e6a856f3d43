"""Multi-tier cache with exact invalidation: keys, entries, backends, tiers, a shared Redis layer, metrics.

Entries record the file versions they were built from, so no tier ever serves an
answer built from an older file, whatever its TTL (see ``tiers.TieredCache``).
"""

from __future__ import annotations

from indexer.cache.backends import Backend, MemoryBackend, RedisBackend, SqliteBackend
from indexer.cache.entry import INDEX_DEP, Entry, index_versions, task_dep
from indexer.cache.keys import SCHEMA_VERSION, make_key, workspace_id
from indexer.cache.tiers import DEFAULT_TIERS, MISSING, TierConfig, TieredCache

__all__ = [
    "Backend", "MemoryBackend", "SqliteBackend", "RedisBackend", "Entry", "task_dep", "INDEX_DEP", "index_versions",
    "SCHEMA_VERSION", "make_key", "workspace_id", "DEFAULT_TIERS", "MISSING", "TierConfig", "TieredCache",
]
