"""Deterministic cache keys: the same request always maps to the same key, in any process."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any

#: Bumped whenever the shape of a cached value changes, so old entries are never read back.
SCHEMA_VERSION = 1
#: Hex digits of the parameter digest kept in a key (128 bits: collisions are not a concern).
_DIGEST_CHARS = 32
#: Hex digits of the engine code's digest in a key.
_ENGINE_DIGEST_CHARS = 12
#: Hex digits of a workspace id derived from its root path.
_WORKSPACE_ID_CHARS = 16


def workspace_id(root: str | Path, identity: str | None = None) -> str:
    """A short stable id for a workspace; pass ``identity`` (e.g. the repo's remote URL) to share across machines."""
    source = identity if identity is not None else Path(root).expanduser().resolve().as_posix()
    return hashlib.sha256(source.encode("utf-8")).hexdigest()[:_WORKSPACE_ID_CHARS]


def normalise(value: Any) -> Any:
    """A canonical form of a parameter: whitespace collapsed, paths POSIX, mappings sorted, ``None`` dropped."""
    if isinstance(value, str):
        return " ".join(value.split())
    if isinstance(value, Path):
        return value.as_posix()
    if isinstance(value, Mapping):
        return {str(k): normalise(v) for k, v in sorted(value.items(), key=lambda kv: str(kv[0])) if v is not None}
    if isinstance(value, (set, frozenset)):
        return sorted(normalise(v) for v in value)
    if isinstance(value, (list, tuple)):
        return [normalise(v) for v in value]
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


@lru_cache(maxsize=1)
def engine_digest() -> str:
    """A digest of the engine's own code: an answer built by other ranking or packing code (an upgrade, a
    teammate's older version sharing Redis) has another key, and is never served in place of a fresh one."""
    package = Path(__file__).resolve().parent.parent
    h = hashlib.sha256()
    for path in sorted(package.rglob("*.py")):
        h.update(path.relative_to(package).as_posix().encode("utf-8") + b"\0" + path.read_bytes())
    return h.hexdigest()[:_ENGINE_DIGEST_CHARS]


def make_key(workspace: str, kind: str, params: Mapping[str, Any] | None = None) -> str:
    """``v{schema}.{engine}:{workspace}:{kind}:{digest}`` of the normalised, sorted parameters."""
    canonical = json.dumps(normalise(dict(params or {})), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    digest = hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:_DIGEST_CHARS]
    return f"v{SCHEMA_VERSION}.{engine_digest()}:{workspace}:{kind}:{digest}"
