"""Hybrid search: BM25 and dense vectors fused, then re-ranked with code-aware signals."""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass, field

from indexer.graph.query import nodes_by_ids
from indexer.search import history, lexical, rerank
from indexer.search.edges import EdgeSource, SqlEdges
from indexer.search.graphwalk import expand
from indexer.search.lexical import DocFrequencies, bm25_search, query_terms
from indexer.search.memo import PerIndexState
from indexer.search.postings import Postings
from indexer.terms import distinct_terms
from indexer.types import Node, NodeKind, SearchHit

#: Lexical share of the fused score for a search-box query; the rest is the dense similarity (when vectors
#: exist). semble's searches, NDCG@10 by share: 0.6 .897, 0.65 .900, 0.7 .900, 0.75 .901, 0.8 .898.
SEARCH_ALPHA = 0.7
#: The same for an issue report or task description: its many words overlap the code's, while one
#: embedding of a whole report says less about where the fault is. SWE-bench Lite dev, 166 reports, file
#: Acc@5 / function Acc@10 / gold function in the 4k context: 0.6 .759/.561/.684, 0.8 .771/.581/.684,
#: 0.9 .783/.574/.677, 1.0 .783/.561/.677 (no vectors .777/.555/.677); 0.8 is best on most figures.
REPORT_ALPHA = 0.8
_LEXICAL_POOL = 300
_DENSE_POOL = 200
_GRAPH_POOL = 100  # nodes the graph signal may add to the candidates
_KINDS = {k.value for k in NodeKind} - {"library"}

DenseSearch = Callable[[str, int], list[tuple[int, float]]]


@dataclass(frozen=True, slots=True)
class SearchOptions:
    """Knobs a benchmark turns: fusion weight and which re-ranking signals run."""

    alpha: float | None = None  # None: SEARCH_ALPHA or REPORT_ALPHA, by the query
    signals: Collection[str] = field(default_factory=lambda: rerank.SIGNALS)
    use_dense: bool = True
    posting_budget: float = lexical.POSTING_BUDGET


def ranked_ids(conn, query: str, *, dense: DenseSearch | None = None, options: SearchOptions = SearchOptions(),
               pool: int = _LEXICAL_POOL, frequencies: DocFrequencies | None = None,
               edges: EdgeSource | None = None, postings: Postings | None = None) -> list[tuple[int, float, str]]:
    """All candidate node ids, best first, with fused+re-ranked scores and the signals that applied.

    ``edges`` is where the graph signal reads links (default: through ``conn``); ``postings``, when
    they hold ``conn``'s generation, score BM25 in memory.
    """
    terms = query_terms(conn, query, frequencies, posting_budget=options.posting_budget, postings=postings)
    lexical = bm25_search(conn, [t.word for t in terms], pool, postings, [t.weight for t in terms])
    dense_hits = dense(query, _DENSE_POOL) if (dense is not None and options.use_dense) else []
    if not dense_hits:
        alpha = 1.0
    elif options.alpha is None:
        alpha = fusion_weight(query)
    else:
        alpha = options.alpha
    scores = rerank.fuse(lexical, dense_hits, alpha)
    if not scores:
        return []
    info = _candidate_info(conn, scores)
    scores = {i: s for i, s in scores.items() if i in info}
    base = dict(scores)
    signals = set(options.signals)
    if "size" in signals:
        scores = rerank.prefer_long_functions(scores, info, query)
    if "definitions" in signals:
        scores = rerank.boost_definitions(scores, info, query)
    if "name_terms" in signals:
        scores = rerank.boost_name_terms(scores, info, {t.word for t in terms})
    if "path_match" in signals:
        match = _file_names(conn).match(_query_words(conn, query))
        joining = _module_nodes(conn, rerank.named_files(query, match))
        present = {c.path for c in info.values()}
        joining = {p: i for p, i in joining.items() if p not in present}
        if joining:
            joined = _candidate_info(conn, {i: 0.0 for i in joining.values()})  # not an empty file's module
            info.update(joined)
            scores.update({i: 0.0 for i in joined})
            base.update({i: 0.0 for i in joined})
        scores = rerank.boost_path_match(scores, info, query, match)
    if "history" in signals and rerank.wants_history(query):
        scores = rerank.boost_history(scores, info, history.file_scores(conn, query))
    if "file_cohesion" in signals:
        scores = rerank.boost_file_cohesion(scores, info, query)
    vendored = _vendored_bundles(conn) if "peripheral" in signals else frozenset()
    if "peripheral" in signals:
        scores = rerank.demote_peripheral(scores, info, query, vendored)
    if "legacy" in signals:
        scores = rerank.demote_legacy(scores, info, lambda paths: _indexed_paths(conn, paths))
    linked: set[int] = set()
    if "graph" in signals:
        seeds = rerank.graph_seeds(scores)
        walk = expand(edges if edges is not None else SqlEdges(conn), seeds)
        joining = sorted((i for i in walk if i not in info), key=lambda i: (-walk[i], i))[:_GRAPH_POOL]
        kept = set(joining)  # a list's `in` over ~1,000 walked nodes was 4% of a Django context
        walk = {i: v for i, v in walk.items() if i in info or i in kept}
        info.update(_candidate_info(conn, {i: 0.0 for i in joining}))  # libraries have no file: left out
        walk = {i: v for i, v in walk.items() if i in info}
        damp = rerank.peripheral_damping(info, query, vendored) if "peripheral" in signals else (lambda i: 1.0)
        scores = rerank.boost_graph(scores, walk, seeds, damp)
        linked = {i for i in walk if i not in seeds}
        base.update({i: 0.0 for i in scores if i not in base})
    if "saturation" in signals:
        scores = rerank.saturate_files(scores, info, query)
    lexical_ids = {i for i, _ in lexical}
    dense_ids = {i for i, _ in dense_hits}
    out = []
    for i, s in sorted(scores.items(), key=lambda x: (-x[1], x[0])):
        why = "+".join(w for w, hit in (("bm25", i in lexical_ids), ("vector", i in dense_ids),
                                        ("graph", i in linked)) if hit)
        ratio = s / base[i] if base[i] else 1.0
        if ratio > 1.01:
            why += f" boosted x{ratio:.1f}"
        elif ratio < 0.99:
            why += f" demoted x{ratio:.1f}"
        out.append((i, s, why))
    return _path_first(conn, query, out)


def _path_first(conn, query: str, ranked: list[tuple[int, float, str]]) -> list[tuple[int, float, str]]:
    """A query that is an indexed file's path (``django/db/models/query.py``) finds that module first: as
    words, its parts are common in the code, and BM25 had it 18th."""
    path = query.strip().removeprefix("./")
    if "/" not in path and not path.endswith((".py", ".pyi")):
        return ranked
    row = conn.execute("SELECT n.id FROM files f JOIN nodes n ON n.file_id = f.id AND n.kind = 'module' "
                       "WHERE f.path = ?", (path,)).fetchone()
    if row is None:
        return ranked
    top = max((score for _, score, _ in ranked), default=1.0)
    return [(row[0], top, "path"), *(r for r in ranked if r[0] != row[0])]


def fusion_weight(query: str) -> float:
    """The lexical share of the fused score for ``query``."""
    return SEARCH_ALPHA if rerank.is_search_like(query) else REPORT_ALPHA


def _query_words(conn, query: str) -> dict[str, str]:
    """The query's distinct words (identifier parts, no filler), each with the index's stem of it."""
    words = distinct_terms(query)
    return dict(zip(words, lexical.stems(conn, words)))


_FILE_NAMES = PerIndexState(kept=4)
_VENDORED = PerIndexState(kept=4)
#: Some module of ``folder`` imports code of ``host`` outside ``folder``. Prefixes as ranges (``'/'`` + 1 is
#: ``'0'``): the files' path index answers them.
_IMPORTS_HOST = (
    "SELECT 1 FROM files f JOIN nodes n ON n.file_id = f.id JOIN edges e ON e.src = n.id AND e.kind = 'imports' "
    "JOIN nodes m ON m.id = e.dst JOIN files g ON g.id = m.file_id "
    "WHERE f.path > :folder || '/' AND f.path < :folder || '0' AND g.path > :host || '/' AND g.path < :host || '0' "
    "AND NOT (g.path > :folder || '/' AND g.path < :folder || '0') LIMIT 1")


def _file_names(conn) -> rerank.FileNames:
    """The indexed paths and their common words, for the generation ``conn`` reads (cached)."""
    def build() -> rerank.FileNames:
        paths = tuple(r[0] for r in conn.execute("SELECT path FROM files ORDER BY path"))
        # A save changes a file's content, rarely the paths: an earlier generation's names may do (rebuilding
        # them cost each save's first search ~13 ms on Django).
        same = next((n for n in _FILE_NAMES.recent(conn) if n.paths == paths), None)
        return same or rerank.FileNames.of(paths, lambda words: lexical.stems(conn, words))
    return _FILE_NAMES.get(conn, build)


def _vendored_bundles(conn) -> frozenset[str]:
    """The index's bundle folders (``rerank.bundle_dir``) that hold vendored copies: no module in them imports
    the package around them. requests' ``requests/packages/urllib3`` never imports requests; a package's own
    ``packages/`` folder (poetry's) imports the rest of it. Once per generation: few paths have such a folder."""
    def build() -> frozenset[str]:
        rows = conn.execute("SELECT path FROM files WHERE path LIKE '%/packages/%' OR path LIKE '%/extern/%'")
        bundles = {b for b in (rerank.bundle_dir(r[0]) for r in rows) if b is not None}
        return frozenset(folder for folder, host in bundles
                         if conn.execute(_IMPORTS_HOST, {"folder": folder, "host": host}).fetchone() is None)
    return _VENDORED.get(conn, build)


def _module_nodes(conn, paths: list[str]) -> dict[str, int]:
    """The module node of each path."""
    out: dict[str, int] = {}
    for i in range(0, len(paths), 500):
        chunk = paths[i : i + 500]
        out.update(conn.execute(f"SELECT f.path, n.id FROM files f JOIN nodes n ON n.file_id = f.id "
                                f"AND n.kind = 'module' WHERE f.path IN ({','.join('?' * len(chunk))})", chunk))
    return out


def _indexed_paths(conn, paths: set[str]) -> set[str]:
    """Which of ``paths`` are indexed files."""
    ordered = sorted(paths)
    found: set[str] = set()
    for i in range(0, len(ordered), 500):
        chunk = ordered[i : i + 500]
        found.update(r[0] for r in conn.execute(
            f"SELECT path FROM files WHERE path IN ({','.join('?' * len(chunk))})", chunk))
    return found


def _candidate_info(conn, scores: dict[int, float]) -> dict[int, rerank.CandidateInfo]:
    """What the signals read about each candidate; the module of an empty file is no candidate.

    An empty ``__init__.py`` is a document of path words alone, so short that BM25 ranked it second for
    ``QuerySet.bulk_create`` on Django (``tests/bulk_create/__init__.py``), and it has nothing to show.
    """
    ids = list(scores)
    out: dict[int, rerank.CandidateInfo] = {}
    for i in range(0, len(ids), 500):
        chunk = ids[i : i + 500]
        marks = ",".join("?" * len(chunk))
        for node_id, kind, name, qualname, path, lines in conn.execute(
                f"SELECT n.id, n.kind, n.name, n.qualname, f.path, n.end_line - n.start_line + 1 FROM nodes n "
                f"JOIN files f ON f.id=n.file_id WHERE n.id IN ({marks}) AND NOT (n.kind='module' AND f.size=0)",
                chunk):
            out[node_id] = rerank.CandidateInfo(node_id, kind, name, qualname, path, lines)
    return out


def search(conn, query: str, *, top_k: int = 10, kind: str | None = None, dense: DenseSearch | None = None,
           options: SearchOptions = SearchOptions(), count_tokens: Callable[[str], int] | None = None,
           code_of: Callable = None, frequencies: DocFrequencies | None = None,
           edges: EdgeSource | None = None, postings: Postings | None = None) -> list[SearchHit]:
    """The ``top_k`` best nodes for ``query`` (optionally of one kind), as SearchHits."""
    if not query or not query.strip():
        raise ValueError("search needs a non-empty query")
    if top_k < 1:
        raise ValueError(f"top_k must be >= 1, not {top_k}")
    if kind is not None and kind not in _KINDS:
        raise ValueError(f"unknown kind {kind!r}; valid: {', '.join(sorted(_KINDS))}")
    ranked = ranked_ids(conn, query, dense=dense, options=options, frequencies=frequencies, edges=edges,
                        postings=postings)
    if kind is not None:
        kinds = dict(_kinds(conn, [i for i, _, _ in ranked]))
        ranked = [r for r in ranked if kinds.get(r[0]) == kind]
    ranked = ranked[:top_k]
    nodes = nodes_by_ids(conn, [i for i, _, _ in ranked])
    hits = []
    for i, score, why in ranked:
        node = nodes[i]
        tokens = count_tokens(code_of(node)) if (count_tokens and code_of) else 0
        hits.append(SearchHit(node=node, score=rerank.squash(score), tokens=tokens, why=why))
    return hits


def _kinds(conn, ids: list[int]):
    for i in range(0, len(ids), 500):
        chunk = ids[i : i + 500]
        yield from conn.execute(f"SELECT id, kind FROM nodes WHERE id IN ({','.join('?' * len(chunk))})", chunk)


def hit_from_json(data: dict) -> SearchHit:
    """A SearchHit back from its cached JSON form."""
    node = Node(id=data["id"], kind=NodeKind(data["kind"]), name=data["name"].rsplit(".", 1)[-1],
                qualname=data["name"], path=data["path"], start_line=data["start_line"],
                end_line=data["end_line"], signature=data.get("signature", ""), doc=data.get("doc", ""))
    return SearchHit(node=node, score=data["score"], tokens=data["tokens"], why=data["why"])
