"""The one place that opens SQLite connections, with sqlite-vec and FTS5 ready.

Many Python builds ship a ``sqlite3`` that cannot load extensions, and
sqlite-vec is a loadable extension; ``sqlean`` bundles a SQLite that can. The
driver is chosen once per process so every connection raises the same error
classes, exported here as ``DatabaseError``, ``IntegrityError`` and
``OperationalError``.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from types import ModuleType

import sqlite_vec

BUSY_TIMEOUT_MS = 5000
#: Negative cache_size is in KiB: 16 MiB of page cache per connection (64 MiB cost ~50 MB of peak RSS, no speed).
CACHE_SIZE_KIB = 16 * 1024
#: Memory-map up to 256 MiB of the database file for faster reads.
MMAP_SIZE_BYTES = 256 * 1024 * 1024


def _loads_vec(module: ModuleType) -> bool:
    """Whether this driver can load the sqlite-vec extension in practice."""
    if not hasattr(module.Connection, "enable_load_extension"):
        return False
    conn = module.connect(":memory:")
    try:
        conn.enable_load_extension(True)
        sqlite_vec.load(conn)
        conn.enable_load_extension(False)
        return True
    except (AttributeError, module.Error):
        return False
    finally:
        conn.close()


#: FTS5 contentless tables accept DELETE from this version on (contentless_delete=1).
MIN_SQLITE = (3, 43, 0)


def _choose_driver() -> tuple[ModuleType, bool]:
    """The stdlib driver if it is recent enough and loads sqlite-vec, else sqlean; and whether vectors work."""
    if sqlite3.sqlite_version_info >= MIN_SQLITE and _loads_vec(sqlite3):
        return sqlite3, True
    try:
        import sqlean
    except ImportError:
        return sqlite3, False
    return sqlean, _loads_vec(sqlean)


def _has_fts5(module: ModuleType) -> bool:
    """Whether the driver's SQLite was compiled with FTS5."""
    conn = module.connect(":memory:")
    try:
        conn.execute("CREATE VIRTUAL TABLE probe USING fts5(body)")
        return True
    except module.OperationalError:
        return False
    finally:
        conn.close()


_DRIVER, _VECTORS = _choose_driver()
_FTS5 = _has_fts5(_DRIVER)

Connection = _DRIVER.Connection
DatabaseError = _DRIVER.DatabaseError
IntegrityError = _DRIVER.IntegrityError
OperationalError = _DRIVER.OperationalError


def vector_support() -> bool:
    """Whether connections can load sqlite-vec (vector search is possible)."""
    return _VECTORS


def driver_name() -> str:
    """Which SQLite binding this process uses ("sqlite3" or "sqlean"), for diagnostics."""
    return _DRIVER.__name__


def connect(path: str | Path, *, readonly: bool = False, vectors: bool = True) -> Connection:
    """Open the database at ``path`` tuned for the indexer, with sqlite-vec loaded if asked."""
    if not _FTS5:
        raise RuntimeError(
            f"SQLite {_DRIVER.sqlite_version} from {driver_name()} lacks FTS5; "
            "install a build with FTS5 (e.g. pip install sqlean.py)"
        )
    if vectors and not _VECTORS:
        raise RuntimeError(
            f"cannot load sqlite-vec with {driver_name()} for {path}; "
            "install sqlean.py or open with vectors=False"
        )
    if readonly:
        uri = Path(path).resolve().as_uri() + "?mode=ro"
        conn = _DRIVER.connect(uri, uri=True, check_same_thread=False, timeout=BUSY_TIMEOUT_MS / 1000)
    else:
        conn = _DRIVER.connect(str(path), check_same_thread=False, timeout=BUSY_TIMEOUT_MS / 1000)
    try:
        if vectors:
            conn.enable_load_extension(True)
            sqlite_vec.load(conn)
            conn.enable_load_extension(False)
        _tune(conn, readonly=readonly)
    except BaseException:
        conn.close()
        raise
    return conn


def _tune(conn: Connection, *, readonly: bool) -> None:
    """Set the pragmas every connection shares; WAL is a file property only a writer sets."""
    if not readonly:
        conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("PRAGMA foreign_keys=ON")
    conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
    conn.execute("PRAGMA temp_store=MEMORY")
    conn.execute(f"PRAGMA cache_size=-{CACHE_SIZE_KIB}")
    conn.execute(f"PRAGMA mmap_size={MMAP_SIZE_BYTES}")
