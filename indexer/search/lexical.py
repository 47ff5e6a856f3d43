"""Lexical retrieval: FTS5 BM25 over code-aware terms, with the query pruned by IDF.

A problem statement can carry hundreds of words; most are common in code
("get", "value", "test") and only slow the query down. Terms are looked up in
the FTS vocabulary and the rarest ones kept.
"""

from __future__ import annotations

import math

from indexer.terms import terms_of

#: BM25 weight per FTS column: name, path, doc, body. A name match says most.
COLUMN_WEIGHTS = (6.0, 2.0, 2.0, 1.0)
MAX_QUERY_TERMS = 40
#: A term in more than this share of nodes carries almost no signal.
MAX_DOC_SHARE = 0.25


def query_terms(conn, query: str) -> list[tuple[str, float]]:
    """Distinct query terms known to the index, with their IDF, rarest first, at most MAX_QUERY_TERMS."""
    terms = list(dict.fromkeys(terms_of(query)))
    if not terms:
        return []
    total = conn.execute("SELECT count(*) FROM nodes WHERE kind != 'library'").fetchone()[0] or 1
    marks = ",".join("?" * len(terms))
    df = dict(conn.execute(f"SELECT term, doc FROM fts_vocab WHERE term IN ({marks})", terms).fetchall())
    scored = [(t, math.log(1 + (total - df[t] + 0.5) / (df[t] + 0.5))) for t in terms
              if t in df and df[t] <= MAX_DOC_SHARE * total]
    if not scored:  # only common terms: keep the least common few rather than nothing
        scored = sorted(((t, math.log(1 + total / df[t])) for t in terms if t in df), key=lambda x: -x[1])[:5]
    scored.sort(key=lambda x: (-x[1], x[0]))
    return scored[:MAX_QUERY_TERMS]


def bm25_search(conn, terms: list[str], limit: int = 200) -> list[tuple[int, float]]:
    """Node ids and BM25 scores (higher is better) for any of ``terms``."""
    if not terms:
        return []
    match = " OR ".join('"' + t.replace('"', '""') + '"' for t in terms)
    weights = ", ".join(str(w) for w in COLUMN_WEIGHTS)
    rows = conn.execute(
        f"SELECT rowid, -bm25(fts, {weights}) AS s FROM fts WHERE fts MATCH ? ORDER BY s DESC LIMIT ?",
        (match, limit)).fetchall()
    return [(r[0], r[1]) for r in rows]
