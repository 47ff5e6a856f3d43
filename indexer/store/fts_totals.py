"""FTS5's row count and token totals, kept true in a contentless-delete table.

bm25() divides by the averages record (id 1 of ``fts_data``): a varint row count, then one
varint token total per column. A contentless-delete table never learns a deleted row's tokens,
so a delete leaves both figures as they were, and each re-indexed file adds its rows again. After
31 incremental passes along Django's history the record counted 205,804 rows for 35,979 live
ones; every BM25 score had drifted from a fresh index's, and a SWE-bench task's gold function
ranked 16th instead of 6th.

So a pass sums the sizes (``fts_docsize``) of the rows it deletes and notes them in ``meta``,
inside its own transaction; once that commits, :func:`settle` subtracts them from the record in
a second, short one. It cannot happen in the pass's transaction: FTS5 keeps the figures in memory
from its first write of a transaction and writes them back at commit. A note that a crash left
behind is settled by the next pass.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence

_RECORD = 1  # fts_data id of the averages record
_NOTE = "fts_removed"  # meta key: [rows, tokens of column 1, ...] deleted but still counted
_CHUNK = 500


def decode(data: bytes) -> list[int]:
    """SQLite's big-endian varints (7 bits a byte, the ninth byte whole)."""
    out, i = [], 0
    while i < len(data):
        value = 0
        for k in range(9):
            byte = data[i]
            i += 1
            if k == 8:
                value = (value << 8) | byte
                break
            value = (value << 7) | (byte & 0x7F)
            if not byte & 0x80:
                break
        out.append(value)
    return out


def encode(values: Iterable[int]) -> bytes:
    """The inverse of :func:`decode` for values below 2**56 (FTS5's token totals)."""
    out = bytearray()
    for value in values:
        if not 0 <= value < 1 << 56:
            raise ValueError(f"cannot encode {value} as an FTS5 total")
        groups = [value & 0x7F]
        value >>= 7
        while value:
            groups.append((value & 0x7F) | 0x80)
            value >>= 7
        out += bytes(reversed(groups))
    return bytes(out)


def read(conn) -> list[int]:
    """The averages record: [row count, token total of each column]; empty before the first row."""
    row = conn.execute("SELECT block FROM fts_data WHERE id = ?", (_RECORD,)).fetchone()
    return decode(row[0]) if row else []


def note_removed(conn, rowids: Sequence[int]) -> None:
    """Before deleting ``rowids`` from ``fts``: add their count and sizes to the pass's note."""
    removed: list[int] = []
    for i in range(0, len(rowids), _CHUNK):
        chunk = rowids[i : i + _CHUNK]
        for (size,) in conn.execute(
                f"SELECT sz FROM fts_docsize WHERE id IN ({','.join('?' * len(chunk))})", chunk):
            _add(removed, [1, *decode(size)])
    if removed:
        row = conn.execute("SELECT value FROM meta WHERE key = ?", (_NOTE,)).fetchone()
        if row:
            _add(removed, json.loads(row[0]))
        conn.execute("INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)", (_NOTE, json.dumps(removed)))


def settle(conn) -> bool:
    """Subtract a committed note from the averages record, in a transaction of its own; whether one was due."""
    if conn.execute("SELECT 1 FROM meta WHERE key = ?", (_NOTE,)).fetchone() is None:
        return False
    conn.execute("BEGIN IMMEDIATE")
    try:
        row = conn.execute("SELECT value FROM meta WHERE key = ?", (_NOTE,)).fetchone()
        if row is not None:
            record, removed = read(conn), json.loads(row[0])
            if len(record) == len(removed):
                _write(conn, [max(0, have - gone) for have, gone in zip(record, removed)])
            else:  # a record of another shape than the note (should not happen): count it afresh
                _write(conn, recount(conn))
            conn.execute("DELETE FROM meta WHERE key = ?", (_NOTE,))
        conn.commit()
    except BaseException:
        conn.rollback()
        raise
    return True


def recount(conn) -> list[int]:
    """The record's true figures, summed over every live row's size (~0.1 s on Django: for migrations)."""
    totals: list[int] = []
    for (size,) in conn.execute("SELECT sz FROM fts_docsize"):
        _add(totals, [1, *decode(size)])
    return totals


def rewrite(conn) -> None:
    """Set the record to its true figures (in the caller's transaction, before any write to ``fts``)."""
    totals = recount(conn)
    if totals:
        _write(conn, totals)
    conn.execute("DELETE FROM meta WHERE key = ?", (_NOTE,))


def _write(conn, values: list[int]) -> None:
    conn.execute("UPDATE fts_data SET block = ? WHERE id = ?", (encode(values), _RECORD))


def _add(into: list[int], values: Sequence[int]) -> None:
    if not into:
        into.extend(0 for _ in values)
    for i, value in enumerate(values):
        into[i] += value
