"""Code-aware re-ranking signals, one small named function each.

Each takes the fused candidates (node id -> score) and the facts it needs,
and returns new scores, so a benchmark can switch one off (``SIGNALS``) and
measure what it is worth.
"""

from __future__ import annotations

import math
import re
import sys
from collections import Counter
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass
from functools import lru_cache

from indexer.terms import split_identifier
from indexer.testpaths import is_test_path

#: Whole identifiers in a query (snake_case, CamelCase, dotted.names): the user named a symbol.
_IDENTIFIER = re.compile(r"\b[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*\b")
_SYMBOL_SHAPE = re.compile(r"_|[a-z][A-Z]|^[A-Z][a-z]+[A-Z]|\.")

DEFINITION_BOOST = 2.0  # the node defines a name the query spells out
NAME_PART_BOOST = 0.5  # per query term found in the node's own name
FILE_COHESION_SHARE = 0.5  # most a file's best node gains from the file's summed score (semble uses 0.2)
FILE_COHESION_STEP = 0.15  # per extra hit in the same file (capped), for issue reports
FILE_COHESION_CAP = 4
GRAPH_SEEDS = 3  # best hits a graph walk starts from
GRAPH_SHARE = 0.3  # most a linked node gains, as a share of the best score
DEMOTION = 0.5  # tests / examples / docs / vendored / compat code, unless asked for
#: Folders of examples, docs, vendored and compat code (test code is ``testpaths.is_test_path``'s). ``_vendor`` is
#: where pip, setuptools and their kin keep vendored copies (``pip/_vendor/requests``).
_DEMOTED_PARTS = re.compile(r"(^|/)(examples?|docs?|_?vendor(ed)?|third_party|compat|benchmarks?)(/|$)")
#: A folder of bundled packages inside a package (requests' ``requests/packages/urllib3``): vendored copies when
#: nothing in it imports the package around it (see ``bundle_dir``). At the top (a monorepo's ``packages/``) it is
#: the project's own code.
_BUNDLE_DIR = re.compile(r"^(.+?)/(?:packages|extern)/")
#: Generated schema migrations (Django's ``migrations/0001_initial.py``): they repeat every model and field name.
_GENERATED = re.compile(r"(^|/)migrations/\d{4}_[^/]*\.py$")
_ASKS_FOR_TESTS = re.compile(r"\btest", re.IGNORECASE)
SEARCH_LIKE_WORDS = 12  # longer requests read as reports or tasks, not searches
PATH_MATCH_SHARE = 1.0  # most a file named like the query gains, as a share of the best score
PATH_MATCH_MIN_RATIO = 0.1  # below this share of the query's words named by the path, no boost
PATH_JOIN_MIN_RATIO = 0.25  # a file named by this share of a search's words joins the candidates
PATH_PREFIX_MIN = 4
COMMON_PATH_SHARE = 0.2  # a path word naming more of the files than this share tells none of them apart
COMMON_PATH_MIN_FILES = 2  # ... and more than two (in a tiny workspace every word names a large share)  # "auth" names "authentication"; shorter prefixes match too much
#: An issue report's fault sits more often in a long function than in a short one: a function or method of
#: L lines weighs max(1, L / SIZE_TYPICAL_LINES) ** SIZE_EXPONENT (see ``prefer_long_functions``).
SIZE_EXPONENT = 0.2
SIZE_TYPICAL_LINES = 10
_SIZED_KINDS = frozenset({"function", "method"})
#: Most a file's code gains when past commits like the query changed the file (``boost_history``).
HISTORY_SHARE = 0.5
SATURATION_DECAY = 0.5  # each further node of a file already ranked counts this much less
#: A whole query that is one identifier (``APIRouter``, ``field_validator``, ``Session.send``) looks a symbol up.
_SYMBOL_QUERY = re.compile(r"^\s*[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*\s*$")
_CODE_SPELLING = re.compile(r"[A-Z_.]")
SYMBOL_DEFINITION_SHARE = 3.0  # a symbol lookup's definition is added this many best scores: it comes first
CASE_MISMATCH = 0.5  # share of that lift for a name that matches only when case is ignored


@dataclass(frozen=True, slots=True)
class CandidateInfo:
    """What the signals read about a candidate node."""

    id: int
    kind: str
    name: str
    qualname: str
    path: str
    lines: int = 1  # the node's line span


def query_identifiers(query: str) -> set[str]:
    """Identifiers a query spells like code (``parse_header``, ``QuerySet``, ``Model.save``), lower-cased."""
    out: set[str] = set()
    for word in _IDENTIFIER.findall(query):
        if _SYMBOL_SHAPE.search(word):
            for part in word.split("."):
                if len(part) > 2:
                    out.add(part.lower())
    return out


def is_symbol_query(query: str) -> bool:
    """The whole query is one identifier spelled like code (``APIRouter``, ``field_validator``,
    ``Session.send``, ``_private``): the user looks a definition up by name. A plain lower-case word
    (``session``) is a topic."""
    return bool(_SYMBOL_QUERY.match(query)) and bool(_CODE_SPELLING.search(query.strip()))


def boost_definitions(scores: dict[int, float], info: dict[int, CandidateInfo], query: str) -> dict[int, float]:
    """A node whose own name a search spells like code is the definition asked for.

    A query that is nothing but that name puts the definition first (SYMBOL_DEFINITION_SHARE best
    scores added): its methods and callers repeat the name more often than the definition does.
    """
    if scores and is_symbol_query(query):
        name = query.strip().rsplit(".", 1)[-1]
        lift = SYMBOL_DEFINITION_SHARE * max(scores.values())
        # ``Session`` is the class; ``session`` the helper function that returns one.
        return {i: s + (lift if info[i].name == name else
                        lift * CASE_MISMATCH if info[i].name.lower() == name.lower() else 0.0)
                for i, s in scores.items()}
    wanted = query_identifiers(query) if is_search_like(query) else set()
    if not wanted:
        # An issue report names the classes and functions it went through (tracebacks, examples), not only
        # the one to fix: on SWE-bench Lite the boost cost .018 file Acc@5 and .032 function Acc@10.
        return scores
    return {i: s * (DEFINITION_BOOST if info[i].name.lower() in wanted else 1.0) for i, s in scores.items()}


@lru_cache(maxsize=1 << 14)
def path_words(path: str) -> frozenset[str]:
    """Words naming a file: its stem and its folder's name, split like identifiers (``sansio/blueprints.py``)."""
    folder, _, name = path.rpartition("/")
    stem = name.rsplit(".", 1)[0]
    words = set(split_identifier(stem)) | set(split_identifier(folder.rpartition("/")[2]))
    return frozenset(w for w in words if w not in ("init", "main"))


@dataclass(frozen=True, slots=True)
class FileNames:
    """The workspace's file paths by the words naming them, with each word's stem in the index. Path words
    naming too many files are left out: the package folder every module sits in ("flask" names no file of
    flask in particular)."""

    paths: tuple[str, ...]
    common: frozenset[str]
    files_of: dict[str, tuple[str, ...]]  # path word -> the paths it names
    words_of_stem: dict[str, tuple[str, ...]]  # stem -> the path words with that stem
    words_of_prefix: dict[str, tuple[str, ...]]  # first PATH_PREFIX_MIN letters -> the path words

    @classmethod
    def of(cls, paths: Iterable[str], stem: Callable[[list[str]], list[str]]) -> "FileNames":
        """From the indexed paths; ``stem`` stems words as the index does (called once, with every word)."""
        paths = tuple(paths)
        files_of: dict[str, list[str]] = {}
        for p in paths:
            for w in path_words(p):
                files_of.setdefault(w, []).append(p)
        limit = max(COMMON_PATH_MIN_FILES, COMMON_PATH_SHARE * len(paths))
        common = frozenset(w for w, ps in files_of.items() if len(ps) > limit)
        words = sorted(w for w in files_of if w not in common)
        words_of_stem: dict[str, list[str]] = {}
        for w, s in zip(words, stem(words)):
            words_of_stem.setdefault(s, []).append(w)
        words_of_prefix: dict[str, list[str]] = {}
        for w in words:
            if len(w) >= PATH_PREFIX_MIN:
                words_of_prefix.setdefault(w[:PATH_PREFIX_MIN], []).append(w)
        return cls(paths, common, {w: tuple(files_of[w]) for w in words},
                   {s: tuple(ws) for s, ws in words_of_stem.items()},
                   {k: tuple(ws) for k, ws in words_of_prefix.items()})

    def words(self, path: str) -> frozenset[str]:
        """The words naming ``path`` that tell it apart."""
        return path_words(path) - self.common

    def match(self, words: dict[str, str]) -> "PathMatch":
        """Which path words each query word (word -> stem) names: same stem, same word, or a prefix of
        PATH_PREFIX_MIN+ letters either way ("auth" and "authentication")."""
        named = []
        for word, stem in words.items():
            hits = set(self.words_of_stem.get(stem, ())) | ({word} if word in self.files_of else set())
            if len(word) >= PATH_PREFIX_MIN:  # a prefix either way shares the first PATH_PREFIX_MIN letters
                hits.update(p for p in self.words_of_prefix.get(word[:PATH_PREFIX_MIN], ())
                            if p.startswith(word) or word.startswith(p))
            named.append(frozenset(hits))
        masks: dict[str, int] = {}
        for bit, hits in enumerate(named):
            for w in hits:
                masks[w] = masks.get(w, 0) | 1 << bit
        return PathMatch(self, tuple(named), masks)


@dataclass(frozen=True, slots=True)
class PathMatch:
    """The path words each word of one query names."""

    files: FileNames
    named: tuple[frozenset[str], ...]  # per query word
    #: path word -> the query words naming it, one bit each (bit k: ``named[k]``). A path has a few words and a
    #: report ~60: or-ing the path's masks is ~6x cheaper than testing every query word against the path.
    masks: dict[str, int]

    def ratio(self, path: str) -> float:
        """Share of the query's words that ``path`` names."""
        if not self.named:
            return 0.0
        found = 0
        for w in self.files.words(path):
            found |= self.masks.get(w, 0)
        return found.bit_count() / len(self.named)

    def files_at_least(self, ratio: float) -> list[str]:
        """Paths named by at least ``ratio`` of the query's words, in path order."""
        if not self.named:
            return []
        counts: Counter = Counter()
        for hits in self.named:
            counts.update({p for w in hits for p in self.files.files_of[w]})
        return sorted(p for p, n in counts.items() if n / len(self.named) >= ratio)


def boost_path_match(scores: dict[int, float], info: dict[int, CandidateInfo], query: str,
                     match: PathMatch) -> dict[int, float]:
    """Code in a file (or folder) named like the query's words rises: ``cookie storage`` -> ``cookies.py``.

    A file gains up to PATH_MATCH_SHARE of the best score, by the share of the query's words its path names.
    """
    if not scores or is_symbol_query(query):  # a name looked up is not a topic
        return scores
    top = max(scores.values())
    lift: dict[str, float] = {}
    out = {}
    for i, s in scores.items():
        path = info[i].path
        if path not in lift:
            ratio = match.ratio(path)
            lift[path] = PATH_MATCH_SHARE * top * ratio if ratio >= PATH_MATCH_MIN_RATIO else 0.0
        out[i] = s + lift[path]
    return out


def wants_history(query: str) -> bool:
    """Whether past commit messages say something about ``query``: an issue report or a task describes a
    change, as commit messages do; a search names code (on semble's searches the history cost NDCG@10
    .883 -> .866, on SWE-bench's reports it gained function Acc@10 .652 -> .665)."""
    return not is_search_like(query)


def boost_history(scores: dict[int, float], info: dict[int, CandidateInfo], history: dict[str, float]) -> dict[int, float]:
    """Code in a file that past commits like the query changed rises (``search.history``), by up to
    HISTORY_SHARE of its own score, in proportion to the file's share of the best file's history score.

    Multiplicative on purpose: an added lift raised every node of a big file above the precise hits
    elsewhere (function Acc@5 .561 -> .529 on SWE-bench Lite dev; multiplied: .594).
    """
    if not history:
        return scores
    return {i: s * (1 + HISTORY_SHARE * history.get(info[i].path, 0.0)) for i, s in scores.items()}


def named_files(query: str, match: PathMatch) -> list[str]:
    """Files a search-like query names (``alias handling`` -> ``aliases.py``), to join the candidates even
    when BM25 missed them: the query's words may be too common in the code to be searched at all."""
    if not is_search_like(query) or is_symbol_query(query):
        return []
    return match.files_at_least(PATH_JOIN_MIN_RATIO)


def saturate_files(scores: dict[int, float], info: dict[int, CandidateInfo], query: str) -> dict[int, float]:
    """Each further node of a file counts SATURATION_DECAY less than the one before it, so a search shows
    several files instead of one file's every method (a file's best node keeps its score).

    Only for search-like queries: a long issue report describes code that usually sits in one file, and
    there the second and third functions of the best file are the likeliest next answers.
    """
    if not is_search_like(query):
        return scores
    seen: Counter = Counter()
    out = {}
    for i, s in sorted(scores.items(), key=lambda x: (-x[1], x[0])):
        path = info[i].path
        out[i] = s * SATURATION_DECAY ** seen[path]
        seen[path] += 1
    return out


def prefer_long_functions(scores: dict[int, float], info: dict[int, CandidateInfo], query: str) -> dict[int, float]:
    """For an issue report, a long function gains on shorter ones with the same lexical evidence.

    BM25 divides a node's term counts by its length, so a long function needs many more of the report's
    words to rank beside a short helper; yet a report's fault lies in a long function more often than in a
    short one (code size is the steadiest predictor of where defects are). A function or method longer than
    SIZE_TYPICAL_LINES gains (lines / SIZE_TYPICAL_LINES) ** SIZE_EXPONENT: x1.4 at 50 lines, x1.8 at 200.
    Shorter ones keep their score (demoting them too lost more tasks than it won), and so do classes and
    modules, whose span is their members'. A search names what it wants, as often a short function as a
    long one: searches are left alone.
    """
    if is_search_like(query):
        return scores
    return {i: s * max(1.0, info[i].lines / SIZE_TYPICAL_LINES) ** SIZE_EXPONENT
            if info[i].kind in _SIZED_KINDS else s for i, s in scores.items()}


@lru_cache(maxsize=1 << 16)
def _name_parts(name: str) -> tuple[str, ...]:
    """Distinct parts of a node name, cached: the same names are candidates of query after query.

    A tuple of interned parts, not a frozenset: ~100 bytes an entry instead of ~500 (the cache
    held 10 MB after 166 Django problem statements as frozensets, and grew toward its cap).
    """
    return tuple(sys.intern(p) for p in dict.fromkeys(split_identifier(name)))


def boost_name_terms(scores: dict[int, float], info: dict[int, CandidateInfo], terms: set[str]) -> dict[int, float]:
    """Query words that appear in a node's own name matter more than words in its body."""
    out = {}
    for i, s in scores.items():
        parts = _name_parts(info[i].name)
        hits = sum(part in terms for part in parts)
        out[i] = s * (1.0 + NAME_PART_BOOST * hits / max(len(parts), 1))
    return out


def boost_file_cohesion(scores: dict[int, float], info: dict[int, CandidateInfo], query: str) -> dict[int, float]:
    """Several hits in one file make the file likelier to be about the query.

    For a search, the file's best node stands for it in a short list: it gains up to FILE_COHESION_SHARE of
    the best score, by the file's summed score over the highest file sum (semble NDCG@10 +0.02 over the
    step below). For an issue report the fix may be any function of that file, so each of its hits gains
    FILE_COHESION_STEP per other hit (capped), keeping their order (SWE-bench function Acc@10 .529 with
    the share, .568 with the step).
    """
    if not scores:
        return scores
    if not is_search_like(query):
        per_file = Counter(info[i].path for i in scores)
        return {i: s * (1.0 + FILE_COHESION_STEP * min(per_file[info[i].path] - 1, FILE_COHESION_CAP))
                for i, s in scores.items()}
    sums: dict[str, float] = {}
    best: dict[str, int] = {}
    for i, s in scores.items():
        path = info[i].path
        sums[path] = sums.get(path, 0.0) + s
        if path not in best or (s, -i) > (scores[best[path]], -best[path]):
            best[path] = i
    unit = FILE_COHESION_SHARE * max(scores.values()) / (max(sums.values()) or 1.0)
    out = dict(scores)
    for path, i in best.items():
        out[i] += unit * sums[path]
    return out


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


def is_search_like(query: str) -> bool:
    """A few words typed into a search box, not an issue report or a task description."""
    return len(query.split()) <= SEARCH_LIKE_WORDS


def asks_for_tests(query: str) -> bool:
    """A short, search-like query that mentions tests wants them; a long issue report that mentions
    its failing test still wants the code under test."""
    return is_search_like(query) and bool(_ASKS_FOR_TESTS.search(query))


def bundle_dir(path: str) -> tuple[str, str] | None:
    """(bundle folder, the package around it) when ``path`` sits in a ``packages/`` or ``extern/`` folder inside
    a package: ``requests/packages/urllib3/util.py`` -> (``requests/packages``, ``requests``)."""
    if "/packages/" not in path and "/extern/" not in path:  # most paths: 20x cheaper than the pattern
        return None
    m = _BUNDLE_DIR.match(path)
    return (m.group(0)[:-1], m.group(1)) if m else None


def demote_peripheral(scores: dict[int, float], info: dict[int, CandidateInfo], query: str,
                      vendored: Collection[str] = ()) -> dict[int, float]:
    """Tests, examples, docs, vendored code and generated migrations rank below the code itself unless the query
    asks for tests. ``vendored``: bundle folders (``bundle_dir``) found to hold vendored copies."""
    if asks_for_tests(query):
        return scores
    return {i: s * (DEMOTION if _is_peripheral(info[i], vendored) else 1.0) for i, s in scores.items()}


def peripheral_damping(info: dict[int, CandidateInfo], query: str,
                       vendored: Collection[str] = ()) -> Callable[[int], float]:
    """The factor ``demote_peripheral`` applies to a node, as a function (1.0 when tests are asked for)."""
    if asks_for_tests(query):
        return lambda i: 1.0
    return lambda i: DEMOTION if _is_peripheral(info[i], vendored) else 1.0


_LEGACY_DIR = re.compile(r"(^|/)(deprecated|legacy|_?compat)(/|$)")
_VERSION_DIR = re.compile(r"(^|/)v(\d+)/")


def newer_copies(path: str) -> list[str]:
    """Where a newer copy of a file under a version folder would be: ``pkg/v1/main.py`` -> ``pkg/main.py``,
    ``pkg/v2/main.py``. A folder of old versions kept beside the current code (pydantic's ``v1/``) otherwise
    outranks it: the old copy is often longer and more explicit."""
    out = []
    for m in _VERSION_DIR.finditer(path):
        head, tail = path[:m.start()] + m.group(1), path[m.end():]
        out += [head + tail, f"{head}v{int(m.group(2)) + 1}/{tail}"]
    return out


def demote_legacy(scores: dict[int, float], info: dict[int, CandidateInfo],
                  existing: Callable[[set[str]], set[str]]) -> dict[int, float]:
    """Deprecated, legacy and compat folders, and old copies under a version folder whose newer copy exists
    (``existing`` tells which of some paths are indexed), rank below the current code."""
    paths = {info[i].path for i in scores}
    wanted = {p: newer_copies(p) for p in paths if _VERSION_DIR.search(p)}
    found = existing({c for cs in wanted.values() for c in cs}) if wanted else set()
    legacy = {p for p in paths if _LEGACY_DIR.search(p) or any(c in found for c in wanted.get(p, ()))}
    return {i: s * (DEMOTION if info[i].path in legacy else 1.0) for i, s in scores.items()}


def _is_peripheral(node: CandidateInfo, vendored: Collection[str] = ()) -> bool:
    if node.kind == "test" or is_test_path(node.path) or _DEMOTED_PARTS.search(node.path) \
            or _GENERATED.search(node.path):
        return True
    bundle = bundle_dir(node.path) if vendored else None
    return bundle is not None and bundle[0] in vendored


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


SIGNALS = ("size", "definitions", "name_terms", "path_match", "history", "file_cohesion", "graph", "peripheral",
           "legacy", "saturation")
