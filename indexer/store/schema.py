"""The index database: schema, version, migrations, and refusing foreign or corrupt files.

One SQLite file per workspace, WAL mode, one writer. Deleting it only costs a
re-index, so anything that is not a healthy codeahead index of a known schema
version is moved aside and rebuilt, never used.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path

from indexer import sqlite
from indexer.locks import OPEN_LOCK_NAME, index_lock
from indexer.store import fts_totals

log = logging.getLogger(__name__)

#: Written into the SQLite header (PRAGMA application_id): "CAHD".
APPLICATION_ID = 0x43414844
SCHEMA_VERSION = 2

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS files (
    id INTEGER PRIMARY KEY,
    path TEXT NOT NULL UNIQUE,
    module TEXT NOT NULL,
    hash TEXT NOT NULL,
    size INTEGER NOT NULL,
    mtime REAL NOT NULL,
    language TEXT NOT NULL,
    version INTEGER NOT NULL,
    lines INTEGER NOT NULL,
    has_errors INTEGER NOT NULL DEFAULT 0,
    indexed_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS sources (file_id INTEGER PRIMARY KEY, text TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS nodes (
    id INTEGER PRIMARY KEY,
    file_id INTEGER,
    kind TEXT NOT NULL,
    name TEXT NOT NULL,
    qualname TEXT NOT NULL,
    parent_id INTEGER,
    start_line INTEGER NOT NULL,
    end_line INTEGER NOT NULL,
    signature TEXT NOT NULL DEFAULT '',
    doc TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS nodes_file ON nodes(file_id);
CREATE INDEX IF NOT EXISTS nodes_qualname ON nodes(qualname);
CREATE INDEX IF NOT EXISTS nodes_name ON nodes(name);
CREATE INDEX IF NOT EXISTS nodes_parent ON nodes(parent_id);
-- Library nodes only (a few hundred): every pass looks them up and collects the unused ones.
CREATE INDEX IF NOT EXISTS nodes_library ON nodes(qualname) WHERE kind = 'library';
-- Each edge is stored once; the inverse direction is the (dst, kind) index.
CREATE TABLE IF NOT EXISTS edges (
    src INTEGER NOT NULL,
    kind TEXT NOT NULL,
    dst INTEGER NOT NULL,
    confidence REAL NOT NULL,
    PRIMARY KEY (src, kind, dst)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS edges_dst ON edges(dst, kind);
-- Resolution inputs per file, so dependents re-resolve without re-parsing.
-- node_ids: msgpack [module node, *definition nodes] in definition order (ids survive re-parses).
CREATE TABLE IF NOT EXISTS file_facts (file_id INTEGER PRIMARY KEY, blob BLOB NOT NULL, node_ids BLOB NOT NULL);
-- Names each file's resolution consulted: a change to a name re-resolves exactly these files.
CREATE TABLE IF NOT EXISTS deps (name TEXT NOT NULL, file_id INTEGER NOT NULL, PRIMARY KEY (name, file_id)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS deps_file ON deps(file_id);
CREATE TABLE IF NOT EXISTS skipped (path TEXT PRIMARY KEY, reason TEXT NOT NULL, detail TEXT NOT NULL DEFAULT '');
-- Code-aware terms per node (rowid = node id); identifiers keep underscores whole.
-- Contentless: the text lives in nodes/sources, the index only needs the terms.
CREATE VIRTUAL TABLE IF NOT EXISTS fts USING fts5(
    name, path, doc, body, tokenize = "porter unicode61 tokenchars '_'", content = '', contentless_delete = 1
);
CREATE VIRTUAL TABLE IF NOT EXISTS fts_vocab USING fts5vocab(fts, 'row');
"""

#: MIGRATIONS[v] upgrades a database at schema version v to v + 1.
MIGRATIONS: dict[int, Callable[[object], None]] = {
    1: fts_totals.rewrite,  # version 1 left deleted rows counted in bm25()'s averages record
}
#: Indexes added since a schema version was cut. Builds without them read and write such a database
#: unchanged (SQLite keeps every index up to date), so they are made on open, with no version bump that
#: would make an older build rebuild the index.
ADDED_INDEXES = ("CREATE INDEX IF NOT EXISTS nodes_library ON nodes(qualname) WHERE kind = 'library'",)


class ForeignDatabase(Exception):
    """The file at the index path is not a codeahead index (or is corrupt)."""


def _check(conn: object) -> int:
    """The schema version of a healthy codeahead index; raises ForeignDatabase otherwise."""
    try:
        app_id = conn.execute("PRAGMA application_id").fetchone()[0]
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    except sqlite.DatabaseError as exc:
        raise ForeignDatabase(f"unreadable database: {exc}") from exc
    if not tables:
        return 0  # empty file: a fresh index
    if app_id != APPLICATION_ID or "meta" not in tables:
        raise ForeignDatabase(f"not a codeahead index (application_id={app_id:#x})")
    try:
        row = conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
    except sqlite.DatabaseError as exc:
        raise ForeignDatabase(f"corrupt meta table: {exc}") from exc
    if row is None:
        raise ForeignDatabase("codeahead index without a schema version")
    return int(row[0])


def _move_aside(path: Path, reason: str) -> None:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for suffix in ("", "-wal", "-shm"):
        part = Path(f"{path}{suffix}")
        if part.exists():
            part.replace(Path(f"{path}{suffix}.broken-{stamp}"))
    # The task event logs and the prediction model live in the same file: say where they went.
    log.warning("index %s was unusable (%s); moved aside to %s.broken-%s (with its task event logs and "
                "prediction model) and rebuilding", path, reason, path, stamp)


def open_database(path: Path) -> tuple[object, bool]:
    """Open (creating or rebuilding as needed) the index at ``path``; returns (connection, rebuilt)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with index_lock(path.parent, name=OPEN_LOCK_NAME):  # not while another process creates, migrates or rebuilds it
        return _open_checked(path)


def _open_checked(path: Path) -> tuple[object, bool]:
    rebuilt = False
    for attempt in range(2):
        conn = None
        try:
            conn = sqlite.connect(path)
            version = _check(conn)
            if version > SCHEMA_VERSION:
                raise ForeignDatabase(f"schema version {version} is newer than this codeahead ({SCHEMA_VERSION})")
            if version == 0:
                _create(conn)
                version = SCHEMA_VERSION
            while version < SCHEMA_VERSION:
                MIGRATIONS[version](conn)
                version += 1
                conn.execute("UPDATE meta SET value=? WHERE key='schema_version'", (str(version),))
                conn.commit()
            for ddl in ADDED_INDEXES:  # ~10 ms once on a Django-sized index, microseconds after
                conn.execute(ddl)
            conn.commit()
            return conn, rebuilt
        except (ForeignDatabase, sqlite.DatabaseError) as exc:
            if conn is not None:
                conn.close()
            if attempt:
                raise
            _move_aside(path, str(exc))
            rebuilt = True
    raise AssertionError("unreachable")


def generation(conn) -> int:
    """The index generation a connection's snapshot sees (each pass that changes the index adds one)."""
    row = conn.execute("SELECT value FROM meta WHERE key='generation'").fetchone()
    return int(row[0]) if row else 0


def _create(conn: object) -> None:
    from indexer.events import EVENTS_SCHEMA

    conn.executescript(SCHEMA)
    conn.executescript(EVENTS_SCHEMA)
    conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
    conn.executemany(
        "INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)",
        [("schema_version", str(SCHEMA_VERSION)), ("generation", "0"), ("last_change", "0")],
    )
    conn.commit()
