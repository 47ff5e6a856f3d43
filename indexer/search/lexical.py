"""Lexical retrieval: FTS5 BM25 over code-aware terms, with the query pruned by IDF.

A problem statement can carry hundreds of words; most are common in code
("get", "value", "test") and only slow the query down. Terms are looked up in
the FTS vocabulary and the most telling ones kept, within a posting budget: an
FTS5 OR query costs about 1 microsecond per matching (row, term) on this
machine, so a few common terms cost more than dozens of rare ones. They still
help localisation: on SWE-bench Lite dev (166 tasks, one run) budgets of 0.2 /
0.5 / 1.0 x nodes / none gave file Acc@5 .717 / .741 / .765 / .771 and function
Acc@10 .490 / .516 / .535 / .529, while Django's get_context p50 was ~37 ms at
0.2 and ~64 ms at 1.0. The default, 1.0, only trims the costliest queries.
Short queries are never pruned (ALWAYS_KEPT): on semble's searches, dropping
their few common words cost 0.04 NDCG@10.
"""

from __future__ import annotations

import math
import threading
from typing import NamedTuple

from indexer.search.postings import COLUMN_WEIGHTS, TOKENIZER, Postings
from indexer.search.rerank import is_search_like, query_identifiers
from indexer.terms import terms_of

#: A long report keeps its 60 most telling words (the posting budget below limits it too). 40 cut 102 of 166
#: SWE-bench Lite reports; 60 cuts 41: file Acc@5 .765 -> .789, function Acc@10 .613 -> .626. 100 (3 cut) ranks
#: the same within a task or two, at more postings per query.
MAX_QUERY_TERMS = 60
#: A term in more than this share of nodes carries almost no signal in a long request.
MAX_DOC_SHARE = 0.25
#: A search's few words are all it has: only a word in most nodes is dropped (semble NDCG@10 0.872 -> 0.880
#: keeping "model" and "field" in pydantic, where each is in over a quarter of the nodes).
SEARCH_DOC_SHARE = 0.5
#: Total postings (summed document frequencies) a query may read, as a share of all nodes.
POSTING_BUDGET = 1.0
#: The most telling terms are kept whatever they cost: a short query needs all its words.
ALWAYS_KEPT = 4
#: Most times a report's term counts in its BM25 score (its query term frequency, see ``repeat_weight``).
MAX_TERM_WEIGHT = 4


#: A scratch FTS5 table with the index's tokenizer: it stems query words exactly as the index did.
_STEMMER_DDL = (
    f"CREATE VIRTUAL TABLE IF NOT EXISTS temp.query_words USING fts5(words, tokenize = \"{TOKENIZER}\")",
    "CREATE VIRTUAL TABLE IF NOT EXISTS temp.query_stems USING fts5vocab(temp, query_words, 'instance')",
)


#: Stems seen before, by word: the tokenizer is fixed, so a word's stem never changes.
_STEMS: dict[str, str] = {}
_MAX_CACHED_STEMS = 200_000


def stems(conn, words: list[str]) -> list[str]:
    """The index's stem of each word (same order), through SQLite's own porter tokenizer."""
    unknown = list(dict.fromkeys(w for w in words if w not in _STEMS))
    if unknown:
        for ddl in _STEMMER_DDL:
            conn.execute(ddl)
        conn.execute("DELETE FROM temp.query_words")
        conn.execute("INSERT INTO temp.query_words(words) VALUES (?)", (" ".join(unknown),))
        found = dict.fromkeys(unknown)
        for term, offset in conn.execute("SELECT term, offset FROM temp.query_stems"):
            if offset < len(unknown):
                found[unknown[offset]] = term
        if len(_STEMS) > _MAX_CACHED_STEMS:
            _STEMS.clear()
        _STEMS.update({w: t if t is not None else w for w, t in found.items()})
    return [_STEMS[w] for w in words]


class DocFrequencies:
    """Document frequency per stem, remembered across the queries of one index.

    fts5vocab counts a term's documents by walking its whole doclist, so looking up the common
    words of a long problem statement cost ~4 ms a query on Django. Frequencies only choose and
    order a query's terms (BM25 scores come from FTS5's own statistics), so counts a few edits old
    are harmless; they are forgotten when the node count drifts by DRIFT. Words the index does not
    know are never remembered: a name added by the next edit must be found at once.
    """

    DRIFT = 0.05

    def __init__(self) -> None:
        self._df: dict[str, int] = {}
        self._total = 0
        self._lock = threading.Lock()

    def of(self, conn, stems: list[str], total: int) -> dict[str, int]:
        """Frequencies of the known ``stems``."""
        with self._lock:
            if abs(total - self._total) > self.DRIFT * self._total:
                self._df, self._total = {}, total
            known = {s: self._df[s] for s in stems if s in self._df}
        missing = [s for s in stems if s not in known]
        if missing:
            found = _lookup(conn, missing)
            with self._lock:
                self._df.update(found)
            known.update(found)
        return known


def _lookup(conn, stems: list[str]) -> dict[str, int]:
    marks = ",".join("?" * len(stems))
    return dict(conn.execute(f"SELECT term, doc FROM fts_vocab WHERE term IN ({marks})", stems).fetchall())


class QueryTerm(NamedTuple):
    """One word of a query as BM25 uses it."""

    word: str  # as written (FTS5 stems it again in MATCH)
    idf: float
    weight: int  # times the word counts in the score: 1, or more for a word a report repeats


def repeat_weight(repeats: int) -> int:
    """How many times a word a report says ``repeats`` times counts: 1 + log2, at most MAX_TERM_WEIGHT.

    BM25's query-term-frequency factor, in whole numbers so that FTS5 can apply it (a phrase given
    k times counts k times; bm25() has no per-phrase weight). An issue report repeats the names of
    what is broken: SWE-bench Lite dev, 166 reports, file Acc@1 .524 -> .554, function Acc@10
    .561 -> .613, gold function in the 4k context .710 -> .735, file Acc@5 unchanged (.765).
    """
    return min(1 + int(math.log2(repeats)), MAX_TERM_WEIGHT) if repeats > 1 else 1


def query_terms(conn, query: str, frequencies: DocFrequencies | None = None, *,
                posting_budget: float | None = None, postings: Postings | None = None) -> list[QueryTerm]:
    """Distinct query words known to the index with their IDF, most telling first, at most MAX_QUERY_TERMS.

    Words are returned as written (FTS5 stems them again in MATCH); IDF is looked up by stem.
    A long problem statement's rarest words are mostly noise (typos, traceback paths), so words
    are ordered by how often the query repeats them times their IDF, and the words the query
    spells like code identifiers come first: they name what the user is looking at. Past the first
    ALWAYS_KEPT terms, a term whose postings would overrun ``posting_budget`` (default
    POSTING_BUDGET) x nodes is skipped. Frequencies come from ``postings`` when given (exact, free).
    A report's words are weighted by how often it repeats them (``repeat_weight``); a search's
    few words count once each (its words rarely repeat, and semble's searches are tuned so).
    """
    words = terms_of(query)
    if not words:
        return []
    by_stem: dict[str, str] = {}
    repeats: dict[str, int] = {}
    for word, stem in zip(words, stems(conn, words)):
        by_stem.setdefault(stem, word)
        repeats[stem] = repeats.get(stem, 0) + 1
    named = {w for w in query_identifiers(query)}
    total = conn.execute("SELECT count(*) FROM nodes").fetchone()[0] or 1
    keys = list(by_stem)
    if postings is not None:
        df = postings.doc_frequencies(keys)
    else:
        df = frequencies.of(conn, keys, total) if frequencies is not None else _lookup(conn, keys)
    idf = {s: math.log(1 + (total - df[s] + 0.5) / (df[s] + 0.5)) for s in keys if s in df}
    search_like = is_search_like(query)
    share = SEARCH_DOC_SHARE if search_like else MAX_DOC_SHARE
    telling = [s for s in idf if df[s] <= share * total]
    if not telling:  # only common terms: keep the least common few rather than nothing
        telling = sorted(idf, key=lambda s: -idf[s])[:5]
    ranked = sorted(telling, key=lambda s: (by_stem[s] not in named,
                                            -(1 + math.log(repeats[s])) * idf[s], by_stem[s]))
    budget = POSTING_BUDGET if posting_budget is None else posting_budget
    out: list[QueryTerm] = []
    spent = 0
    for s in ranked:
        if len(out) == MAX_QUERY_TERMS:
            break
        if len(out) >= ALWAYS_KEPT and spent + df[s] > budget * total:
            continue
        spent += df[s]
        out.append(QueryTerm(by_stem[s], idf[s], 1 if search_like else repeat_weight(repeats[s])))
    return out


def bm25_search(conn, terms: list[str], limit: int = 200, postings: Postings | None = None,
                weights: list[int] | None = None) -> list[tuple[int, float]]:
    """Node ids and BM25 scores (higher is better) for any of ``terms``, best first, ties by node id.

    From ``postings`` when given (the same scores, without walking FTS5's doclists), else FTS5.
    A term of weight k is given k times in a row: FTS5 sums its phrases in query order and so do
    the postings, so both sources still give the same floats.
    """
    if weights is not None:
        terms = [t for t, k in zip(terms, weights, strict=True) for _ in range(k)]
    if not terms:
        return []
    if postings is not None:
        return postings.search(stems(conn, terms), limit)
    match = " OR ".join('"' + t.replace('"', '""') + '"' for t in terms)
    weights = ", ".join(str(w) for w in COLUMN_WEIGHTS.values())
    rows = conn.execute(
        f"SELECT rowid, -bm25(fts, {weights}) AS s FROM fts WHERE fts MATCH ? ORDER BY s DESC, rowid LIMIT ?",
        (match, limit)).fetchall()
    return [(r[0], r[1]) for r in rows]
