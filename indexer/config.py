"""Where a workspace's index lives, and the limits an index pass applies."""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

from platformdirs import user_cache_dir

#: Overrides the folder that holds index databases (one sub-folder per workspace).
INDEX_DIR_ENV = "CODEAHEAD_INDEX_DIR"
DB_NAME = "index.db"
#: Chooses the embedder when the caller names none: wordllama, minilm or none (unset or empty: the default).
EMBEDDER_ENV = "CODEAHEAD_EMBEDDER"


def default_index_dir(root: Path) -> Path:
    """The user cache folder, keyed by the workspace path so two checkouts never share an index."""
    base = Path(os.environ.get(INDEX_DIR_ENV) or user_cache_dir("codeahead"))
    resolved = str(root.resolve())
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", root.resolve().name)[:40] or "root"
    digest = hashlib.blake2b(resolved.encode(), digest_size=6).hexdigest()
    return base / f"{slug}-{digest}"
