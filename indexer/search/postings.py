"""BM25 from an in-memory copy of the FTS index: FTS5's scores, ~25x sooner.

FTS5 answers a problem statement's OR query by walking every posting of its ~25
terms through the doclists: ~38 ms a query on Django, over half of get_context.
The same postings in numpy arrays score in ~1.5 ms, with FTS5's own bm25()
formula, column weights, IDF and document lengths, so the scores are the same.

A copy (``Postings``) belongs to one index generation and is never changed. The
next generation's copy is made in a background thread by patching the last one
with the files that changed: their stored sources are parsed again and their
search terms tokenized by SQLite's own tokenizer in a scratch FTS5 table, so
stems and counts are exactly the index's. When many files changed it is loaded
whole instead (~3.5 CPU-s on Django). A request whose snapshot is a generation
the memory does not hold uses FTS5 meanwhile: answers never mix generations and
no request waits.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace

import msgpack
import numpy as np

from indexer.parse import parse_file
from indexer.store import fts_totals
from indexer.search.edges import generation
from indexer.terms import search_rows

#: FTS5's bm25() constants.
K1, B = 1.2, 0.75
#: The index's FTS tokenizer (``store/schema.py``); scratch tables must tokenize the same way.
TOKENIZER = "porter unicode61 tokenchars '_'"
#: BM25 weight per FTS column: name, path, doc, body. A name match says most.
COLUMN_WEIGHTS = {"name": 6.0, "path": 2.0, "doc": 2.0, "body": 1.0}
#: More changed files than this are loaded whole rather than patched.
PATCH_FILES = 200
#: Postings added by patches, as a share of the loaded ones, past which a whole load is due.
PATCH_SHARE = 0.1

_WEIGHT = "CASE col " + " ".join(f"WHEN '{c}' THEN {w:g}" for c, w in COLUMN_WEIGHTS.items()) + " END"
_GROUPED = "SELECT {columns}, sum({weight}), count(*) FROM {vocab} GROUP BY term, doc"
_FILES = ("SELECT f.id, f.path, f.module, f.hash, f.language, ff.node_ids "
          "FROM files f JOIN file_facts ff ON ff.file_id = f.id")
_CHUNK = 20_000  # rows per fetch while loading
_EMPTY = (np.empty(0, dtype=np.int64), np.empty(0, dtype=np.float64))
#: Postings whose BM25 term parts one copy keeps ready (12 bytes each: ~3.6 MB): the words of problem
#: statements recur from query to query, and gathering a term's live postings was half of a search.
TERM_PARTS_POSTINGS = 300_000
#: Document counts one copy keeps, one per stem queries named (words the index lacks included).
TERM_COUNTS = 200_000


class _TermParts:
    """Per stem, the live docs and BM25's term-frequency part of each, for one Postings copy (bounded)."""

    def __init__(self) -> None:
        self._parts: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        self._counts: dict[str, int] = {}
        self._size = 0
        self._lock = threading.Lock()

    def get(self, stem: str) -> tuple[np.ndarray, np.ndarray] | None:
        return self._parts.get(stem)

    def put(self, stem: str, docs: np.ndarray, parts: np.ndarray) -> None:
        with self._lock:
            if self._size + len(docs) > TERM_PARTS_POSTINGS:
                self._parts.clear()  # bounded memory; the parts are recomputed identically
                self._size = 0
            if stem not in self._parts:
                self._parts[stem] = (docs, parts)
                self._size += len(docs)

    def count(self, stem: str) -> int | None:
        return self._counts.get(stem)

    def put_count(self, stem: str, n: int) -> None:
        with self._lock:
            if len(self._counts) >= TERM_COUNTS:
                self._counts.clear()
            self._counts[stem] = n

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class _File:
    key: tuple[str, str, str]  # (path, module, hash): any change rewrites the file's FTS rows
    nodes: tuple[int, ...]


@dataclass(frozen=True)
class Postings:
    """The FTS postings of one index generation: docs are node ids, weights column-weighted term counts."""

    generation: int
    terms: dict[str, int]  # stem -> index into starts
    starts: np.ndarray  # int64, len(terms) + 1: the term's slice of docs / weights
    docs: np.ndarray  # int32 node ids grouped by term (as loaded)
    weights: np.ndarray  # float32 (sums of small integers: exact)
    live: np.ndarray  # bool by node id: its loaded postings are current
    doc_len: np.ndarray  # float64 tokens by node id, all columns (FTS5's D)
    n_rows: int  # FTS5's row count and token total (its averages record)
    total_tokens: int
    files: dict[int, _File]
    added: dict[str, dict[int, float]] = field(default_factory=dict)  # stem -> {doc: weight} since the load
    added_terms: dict[int, tuple[str, ...]] = field(default_factory=dict)  # doc -> its stems in ``added``
    added_count: int = 0
    #: Filled by queries, never copied into a patched generation (``replace`` leaves init=False fields out).
    _term_parts: _TermParts = field(default_factory=_TermParts, init=False, repr=False, compare=False)

    def doc_frequencies(self, stems: Iterable[str]) -> dict[str, int]:
        """Documents per stem, for the stems the index knows."""
        out = {}
        for s in stems:
            n = self._doc_count(s)
            if n:
                out[s] = n
        return out

    def search(self, stems: list[str], limit: int) -> list[tuple[int, float]]:
        """Node ids and BM25 scores (higher is better) for any of ``stems``, as FTS5's bm25() gives them.

        Ties are broken by node id, as the FTS5 query does, so either source cuts the same list.
        """
        if not stems or self.n_rows == 0:
            return []
        scores = np.zeros(len(self.doc_len))
        previous = None
        for s in stems:  # FTS5 sums the phrases in query order; so does this, for the same floats
            if s != previous:  # a weighted term comes k times in a row: its scores are made once
                previous = s
                docs, parts = self._scored(s)
                idf = math.log((self.n_rows - len(docs) + 0.5) / (len(docs) + 0.5))
                part_scores = (idf if idf > 0 else 1e-6) * parts
            scores[docs] += part_scores  # a term no node holds adds nothing
        hit = np.flatnonzero(scores)
        if len(hit) > limit:
            cut = np.partition(scores[hit], len(hit) - limit)[len(hit) - limit]
            hit = hit[scores[hit] >= cut]  # every tie at the cut: the node id decides below
        order = np.lexsort((hit, -scores[hit]))[:limit]
        return [(int(i), float(scores[i])) for i in hit[order]]

    def _scored(self, stem: str) -> tuple[np.ndarray, np.ndarray]:
        """The live docs of ``stem`` and BM25's term-frequency part of each, which ``search`` scales by IDF.

        Made once per copy and stem by the operations ``search`` ran on every query before, so the
        scores are the same floats.
        """
        hit = self._term_parts.get(stem)
        if hit is not None:
            return hit
        docs, weights = self._postings(stem)
        avgdl = self.total_tokens / self.n_rows
        parts = (weights * (K1 + 1.0)) / (weights + K1 * (1 - B + B * self.doc_len[docs] / avgdl))
        docs = docs.astype(np.int32)  # node ids: kept at 12 bytes a posting with its part
        self._term_parts.put(stem, docs, parts)
        return docs, parts

    def _doc_count(self, stem: str) -> int:
        """How many live documents hold ``stem`` (what ``_postings`` would return, without gathering them)."""
        n = self._term_parts.count(stem)
        if n is None:
            index, added = self.terms.get(stem), self.added.get(stem)
            n = len(added) if added else 0
            if index is not None:
                n += int(np.count_nonzero(self.live[self.docs[self.starts[index]:self.starts[index + 1]]]))
            self._term_parts.put_count(stem, n)
        return n

    def _postings(self, stem: str) -> tuple[np.ndarray, np.ndarray]:
        index = self.terms.get(stem)
        added = self.added.get(stem)
        if index is None and not added:
            return _EMPTY
        docs, weights = _EMPTY
        if index is not None:
            a, b = self.starts[index], self.starts[index + 1]
            docs = self.docs[a:b]
            keep = self.live[docs]
            docs, weights = docs[keep].astype(np.int64), self.weights[a:b][keep].astype(np.float64)
        if added:
            docs = np.concatenate((docs, np.fromiter(added.keys(), dtype=np.int64, count=len(added))))
            weights = np.concatenate((weights, np.fromiter(added.values(), dtype=np.float64, count=len(added))))
        return docs, weights


def _files(conn) -> dict[int, _File]:
    return {fid: _File((path, module, digest), tuple(msgpack.unpackb(ids)))
            for fid, path, module, digest, _, ids in conn.execute(_FILES)}


def load(conn) -> Postings:
    """Every posting of the index ``conn`` sees (run it inside one read transaction).

    fts5vocab's instance table lists every token as (term, doc, column) in term, then doc order.
    Grouping its 2.7M rows on Django in SQL would sort them (~200 MB with temp_store=MEMORY), so
    runs of one (term, doc) are summed here, chunk by chunk, with the row vocabulary's counts
    saying which term each row belongs to.
    """
    gen = generation(conn)
    conn.execute("CREATE VIRTUAL TABLE IF NOT EXISTS temp.fts_instances USING fts5vocab(main, fts, 'instance')")
    vocabulary = conn.execute("SELECT term, doc, cnt FROM fts_vocab").fetchall()  # same terms, same order
    top = conn.execute("SELECT max(id) FROM nodes").fetchone()[0] or 0
    term_ends = np.cumsum([cnt for _, _, cnt in vocabulary], dtype=np.int64)
    runs = _Runs()
    seen = 0
    cursor = conn.execute(f"SELECT doc, {_WEIGHT} FROM temp.fts_instances")
    while chunk := cursor.fetchmany(_CHUNK):
        rows = np.array(chunk, dtype=np.float64)
        terms_of_rows = np.searchsorted(term_ends, np.arange(seen, seen + len(rows)), side="right")
        runs.add(terms_of_rows.astype(np.int32), rows[:, 0].astype(np.int32), rows[:, 1].astype(np.float32))
        seen += len(rows)
    expected = int(term_ends[-1]) if len(term_ends) else 0
    term_of, docs, weights, tokens = runs.arrays()
    per_term = np.bincount(term_of, minlength=len(vocabulary))
    if seen != expected or not np.array_equal(per_term, [n for _, n, _ in vocabulary]):
        raise RuntimeError(f"the FTS instances ({seen} tokens) disagree with its vocabulary ({expected})")
    size = max(top, int(docs.max()) if len(docs) else 0) + 1
    return Postings(gen, {term: i for i, (term, _, _) in enumerate(vocabulary)},
                    np.concatenate(([0], np.cumsum(per_term))), docs, weights,
                    np.ones(size, dtype=bool), np.bincount(docs, weights=tokens, minlength=size).astype(np.float64),
                    *averages(conn), _files(conn))


class _Runs:
    """Sums consecutive rows of one (term, doc) into a posting, across chunk boundaries.

    Kept column by column, and each column is joined and released before the next, so that the
    whole copy is never twice in memory (Django's four columns are ~24 MB).
    """

    def __init__(self) -> None:
        self._columns: tuple[list[np.ndarray], ...] = ([], [], [], [])

    def add(self, terms: np.ndarray, docs: np.ndarray, weights: np.ndarray) -> None:
        first = np.ones(len(terms), dtype=bool)
        first[1:] = (terms[1:] != terms[:-1]) | (docs[1:] != docs[:-1])
        starts = np.flatnonzero(first)
        part = [terms[starts], docs[starts], np.add.reduceat(weights, starts),
                np.diff(np.append(starts, len(terms))).astype(np.int32)]
        columns = self._columns
        if columns[0]:
            if columns[0][-1][-1] == part[0][0] and columns[1][-1][-1] == part[1][0]:  # a run split by the chunk edge
                columns[2][-1][-1] += part[2][0]
                columns[3][-1][-1] += part[3][0]
                part = [p[1:] for p in part]
        for column, values in zip(columns, part):
            column.append(values)

    def arrays(self) -> tuple[np.ndarray, ...]:
        """(term index, doc, weighted count, token count) per posting; the runs are emptied."""
        out = []
        for column, dtype in zip(self._columns, (np.int32, np.int32, np.float32, np.int32)):
            out.append(np.concatenate(column) if column else np.empty(0, dtype=dtype))
            column.clear()
        return tuple(out)


def averages(conn) -> tuple[int, int]:
    """The row count and token total FTS5's bm25() divides by, from its averages record.

    Scores equal to FTS5's need FTS5's figures; ``store.fts_totals`` keeps them true as rows are
    deleted (a contentless-delete table on its own would go on counting them).
    """
    values = fts_totals.read(conn)
    if not values:  # FTS5 writes the record with its first row: an index with no code has none
        return 0, 0
    if len(values) != 1 + len(COLUMN_WEIGHTS):
        raise RuntimeError(f"unexpected FTS5 averages record: {values!r}")
    return values[0], sum(values[1:])


def changed_files(old: Postings, files: dict[int, _File]) -> tuple[list[int], list[int]]:
    """(files whose FTS rows were rewritten or added, files gone) since ``old``."""
    changed = [fid for fid, f in files.items() if fid not in old.files or old.files[fid].key != f.key]
    gone = [fid for fid in old.files if fid not in files]
    return changed, gone


def patch(old: Postings, conn, files: dict[int, _File] | None = None) -> Postings:
    """``old`` brought to the generation ``conn`` sees, re-reading only the files that changed."""
    gen = generation(conn)
    files = _files(conn) if files is None else files
    changed, gone = changed_files(old, files)
    removed = [i for fid in changed + gone if fid in old.files for i in old.files[fid].nodes]
    rows = _fts_rows(conn, changed, files)
    fresh = _tokenize(conn, rows)
    top = max([len(old.doc_len) - 1, *(doc for _, doc, _, _ in fresh), *(r[0] for r in rows)])
    live = _grown(old.live, top + 1, True)
    doc_len = _grown(old.doc_len, top + 1, 0.0)
    added = {s: dict(d) for s, d in old.added.items()}
    added_terms = dict(old.added_terms)
    count = old.added_count
    for doc in removed:
        if doc < len(old.live):
            live[doc] = False
        doc_len[doc] = 0.0
        for stem in added_terms.pop(doc, ()):
            count -= added[stem].pop(doc, None) is not None
    by_doc: dict[int, list[str]] = {}
    for stem, doc, weight, tokens in fresh:
        added.setdefault(stem, {})[doc] = weight
        doc_len[doc] += tokens
        by_doc.setdefault(doc, []).append(stem)
        count += 1
    for doc in {r[0] for r in rows}:
        live[doc] = False  # a rewritten doc's loaded postings are stale; its new ones are in ``added``
        added_terms[doc] = tuple(by_doc.get(doc, ()))
    n_rows, total_tokens = averages(conn)
    return replace(old, generation=gen, live=live, doc_len=doc_len, n_rows=n_rows, total_tokens=total_tokens,
                   files=files,
                   added={s: d for s, d in added.items() if d}, added_terms=added_terms, added_count=count)


def _grown(values: np.ndarray, size: int, fill) -> np.ndarray:
    out = np.full(max(size, len(values)), fill, dtype=values.dtype)
    out[: len(values)] = values
    return out


def _fts_rows(conn, file_ids: list[int], files: dict[int, _File]) -> list[tuple]:
    """(node id, name, path, doc, body) of the files' nodes, rebuilt from their stored sources."""
    out = []
    for fid in file_ids:
        path, module, _ = files[fid].key
        row = conn.execute("SELECT s.text, f.language FROM sources s JOIN files f ON f.id = s.file_id "
                           "WHERE s.file_id = ?", (fid,)).fetchone()
        if row is None:
            continue
        parsed = parse_file(path, row[0].encode("utf-8"), row[1])
        out += [(node, *terms) for node, terms in zip(files[fid].nodes, search_rows(parsed, module))]
    return out


def _tokenize(conn, rows: list[tuple]) -> list[tuple[str, int, float, int]]:
    """Grouped postings of ``rows`` as the index's tokenizer makes them (a scratch FTS5 table)."""
    if not rows:
        return []
    conn.execute(f"CREATE VIRTUAL TABLE IF NOT EXISTS temp.patch_rows USING fts5(name, path, doc, body, "
                 f"tokenize = \"{TOKENIZER}\")")
    conn.execute("CREATE VIRTUAL TABLE IF NOT EXISTS temp.patch_instances "
                 "USING fts5vocab(temp, patch_rows, 'instance')")
    conn.execute("DELETE FROM temp.patch_rows")
    conn.executemany("INSERT INTO temp.patch_rows(rowid, name, path, doc, body) VALUES (?,?,?,?,?)", rows)
    try:
        return conn.execute(_GROUPED.format(columns="term, doc", weight=_WEIGHT,
                                            vocab="temp.patch_instances")).fetchall()
    finally:
        conn.execute("DELETE FROM temp.patch_rows")


class PostingMemory:
    """Holds the Postings of the newest generation seen, made in a background thread.

    The first load waits for a second request or ``start()`` (a one-shot CLI never pays for it).
    A later generation is patched (or loaded whole, if many files changed) once the index has kept
    it for ``settle`` seconds: re-parsing a large file in this thread right after a save held the
    interpreter while the watcher applied the next one (save-to-visible p95 180 -> 282 ms on
    Django), and a ``git checkout`` costs one update, not one per watcher pass.
    """

    def __init__(self, connect: Callable[[], object], settle: float = 1.0) -> None:
        self._connect = connect
        self._settle = settle
        self._postings: Postings | None = None
        self._worker: threading.Thread | None = None
        self._conn = None  # the worker's connection, interrupted by close()
        self._lock = threading.Lock()
        self._closed = False
        self._requests = 0
        self._seen: tuple[int, float] = (-1, 0.0)  # (newest generation a request met, when first met)

    def source(self, conn) -> Postings | None:
        """The Postings of the generation ``conn`` sees, or None (FTS5 answers; an update may start)."""
        postings = self._postings
        current = generation(conn)
        if postings is not None and postings.generation == current:
            return postings
        now = time.monotonic()
        with self._lock:
            self._requests += 1
            if self._seen[0] != current:
                self._seen = (current, now)
            settled = now - self._seen[1] >= self._settle
        if postings is not None or self._requests >= 2:
            self._update_in_background(settled)
        return None

    def start(self) -> None:
        """Load (or bring up to date) now rather than at the second request: a server about to be asked."""
        self._update_in_background(settled=True)

    def wait(self, timeout: float | None = None) -> None:
        """Block until a running update ends (tests, benchmarks)."""
        worker = self._worker
        if worker is not None:
            worker.join(timeout)

    def close(self) -> None:
        """Stop: a running load is interrupted rather than waited for."""
        self._closed = True
        conn = self._conn
        if conn is not None:
            conn.interrupt()
        self.wait()

    def _update_in_background(self, settled: bool) -> None:
        with self._lock:
            if self._closed or (self._worker is not None and self._worker.is_alive()):
                return
            self._worker = threading.Thread(target=self._update, args=(settled,), name="codeahead-postings",
                                            daemon=True)
            self._worker.start()

    def _update(self, settled: bool) -> None:
        try:
            conn = self._conn = self._connect()
            try:
                conn.execute("BEGIN")  # one snapshot
                postings = self._next(conn, settled)
            finally:
                self._conn = None
                conn.close()
        except Exception:  # a failed update only costs speed: requests keep using FTS5
            if not self._closed:
                log.exception("loading the search postings into memory failed")
            return
        if postings is not None and (self._postings is None or postings.generation >= self._postings.generation):
            self._postings = postings

    def _next(self, conn, settled: bool) -> Postings | None:
        old = self._postings
        if old is None:
            return load(conn)
        if not settled:
            return None
        files = _files(conn)
        changed = sum(map(len, changed_files(old, files)))
        if changed <= PATCH_FILES and old.added_count <= PATCH_SHARE * len(old.docs):
            return patch(old, conn, files)
        return load(conn)
