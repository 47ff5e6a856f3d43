"""Code-aware re-ranking signals, one small named function each.

Each takes the fused candidates (node id -> score) and the facts it needs,
and returns new scores, so a benchmark can switch one off (``SIGNALS``) and
measure what it is worth.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

from indexer.terms import split_identifier

#: Whole identifiers in a query (snake_case, CamelCase, dotted.names): the user named a symbol.
_IDENTIFIER = re.compile(r"\b[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*\b")
_SYMBOL_SHAPE = re.compile(r"_|[a-z][A-Z]|^[A-Z][a-z]+[A-Z]|\.")

DEFINITION_BOOST = 2.0  # the node defines a name the query spells out
NAME_PART_BOOST = 0.5  # per query term found in the node's own name
FILE_COHESION_STEP = 0.15  # per extra hit in the same file (capped)
FILE_COHESION_CAP = 4
GRAPH_SEEDS = 3  # best hits a graph walk starts from
GRAPH_SHARE = 0.3  # most a linked node gains, as a share of the best score
DEMOTION = 0.5  # tests / examples / docs / vendored / compat code, unless asked for
_DEMOTED_PARTS = re.compile(r"(^|/)(tests?|testing|examples?|docs?|vendor(ed)?|third_party|compat|benchmarks?)(/|$)")
_TEST_FILE = re.compile(r"(^|/)(test_[^/]*|[^/]*_test|conftest)\.py$")
_ASKS_FOR_TESTS = re.compile(r"\btest", re.IGNORECASE)
SEARCH_LIKE_WORDS = 12  # longer requests read as reports or tasks, not searches


@dataclass(frozen=True, slots=True)
class CandidateInfo:
    """What the signals read about a candidate node."""

    id: int
    kind: str
    name: str
    qualname: str
    path: str


def query_identifiers(query: str) -> set[str]:
    """Identifiers a query spells like code (``parse_header``, ``QuerySet``, ``Model.save``), lower-cased."""
    out: set[str] = set()
    for word in _IDENTIFIER.findall(query):
        if _SYMBOL_SHAPE.search(word):
            for part in word.split("."):
                if len(part) > 2:
                    out.add(part.lower())
    return out


def boost_definitions(scores: dict[int, float], info: dict[int, CandidateInfo], query: str) -> dict[int, float]:
    """A node whose own name the query spells like code is the definition asked for."""
    wanted = query_identifiers(query)
    if not wanted:
        return scores
    return {i: s * (DEFINITION_BOOST if info[i].name.lower() in wanted else 1.0) for i, s in scores.items()}


@lru_cache(maxsize=1 << 16)
def _name_parts(name: str) -> frozenset[str]:
    """Parts of a node name, cached: the same names are candidates of query after query."""
    return frozenset(split_identifier(name))


def boost_name_terms(scores: dict[int, float], info: dict[int, CandidateInfo], terms: set[str]) -> dict[int, float]:
    """Query words that appear in a node's own name matter more than words in its body."""
    out = {}
    for i, s in scores.items():
        parts = _name_parts(info[i].name)
        hits = len(parts & terms)
        out[i] = s * (1.0 + NAME_PART_BOOST * hits / max(len(parts), 1))
    return out


def boost_file_cohesion(scores: dict[int, float], info: dict[int, CandidateInfo]) -> dict[int, float]:
    """Several hits in one file make each of them likelier: the file is about the query."""
    per_file = Counter(info[i].path for i in scores)
    return {i: s * (1.0 + FILE_COHESION_STEP * min(per_file[info[i].path] - 1, FILE_COHESION_CAP))
            for i, s in scores.items()}


def graph_seeds(scores: dict[int, float]) -> dict[int, float]:
    """The best GRAPH_SEEDS candidates, weighted by score and rank: where the graph walk starts."""
    best = sorted(scores.items(), key=lambda x: (-x[1], x[0]))[:GRAPH_SEEDS]
    return {i: s / (1 + rank) for rank, (i, s) in enumerate(best)}


def boost_graph(scores: dict[int, float], walk: dict[int, float], seeds: dict[int, float],
                damp: Callable[[int], float] = lambda i: 1.0) -> dict[int, float]:
    """Code linked to the best hits (calls, tests, bases, members, imports) rises, or joins the candidates.

    ``walk`` holds personalized-PageRank scores from ``seeds``; each other node gains up to GRAPH_SHARE
    of the best score, in proportion to its walk score, times ``damp(node)`` (the peripheral demotion).
    The fix for a reported symptom often sits one call away from where the words of the report match.
    """
    others = {i: v for i, v in walk.items() if i not in seeds}
    if not others or not scores:
        return scores
    top = max(scores.values())
    peak = max(others.values()) or 1.0
    out = dict(scores)
    for i, v in others.items():
        out[i] = out.get(i, 0.0) + GRAPH_SHARE * top * v / peak * damp(i)
    return out


def asks_for_tests(query: str) -> bool:
    """A short, search-like query that mentions tests wants them; a long issue report that mentions
    its failing test still wants the code under test."""
    return len(query.split()) <= SEARCH_LIKE_WORDS and bool(_ASKS_FOR_TESTS.search(query))


def demote_peripheral(scores: dict[int, float], info: dict[int, CandidateInfo], query: str) -> dict[int, float]:
    """Tests, examples, docs and vendored code rank below the code itself unless the query asks for tests."""
    if asks_for_tests(query):
        return scores
    return {i: s * (DEMOTION if _is_peripheral(info[i]) else 1.0) for i, s in scores.items()}


def peripheral_damping(info: dict[int, CandidateInfo], query: str) -> Callable[[int], float]:
    """The factor ``demote_peripheral`` applies to a node, as a function (1.0 when tests are asked for)."""
    if asks_for_tests(query):
        return lambda i: 1.0
    return lambda i: DEMOTION if _is_peripheral(info[i]) else 1.0


def _is_peripheral(node: CandidateInfo) -> bool:
    return node.kind == "test" or bool(_DEMOTED_PARTS.search(node.path) or _TEST_FILE.search(node.path))


def fuse(lexical: list[tuple[int, float]], dense: list[tuple[int, float]], alpha: float) -> dict[int, float]:
    """Weighted sum of max-normalised BM25 and cosine similarity (``alpha`` = lexical share)."""
    scores: dict[int, float] = {}
    if lexical:
        top = max(s for _, s in lexical) or 1.0
        for i, s in lexical:
            scores[i] = alpha * s / top
    if dense:
        # Cosine similarities of unrelated code sit well above 0: rescale min..max to 0..1.
        lo, hi = min(s for _, s in dense), max(s for _, s in dense)
        span = (hi - lo) or 1.0
        for i, s in dense:
            scores[i] = scores.get(i, 0.0) + (1 - alpha) * (s - lo) / span
    return scores


def squash(x: float) -> float:
    """Map a fused score to 0..1 for display."""
    return 1 - math.exp(-x)


SIGNALS = ("definitions", "name_terms", "file_cohesion", "graph", "peripheral")
