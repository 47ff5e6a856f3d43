"""Candidate next files, one small named function per signal, each giving {path: (score in [0, 1], reason)}.

Each signal can be switched off and measured on its own (see benchmarks/prediction.py); the blend in
``model.py`` learns how much each one is worth.
"""

from __future__ import annotations

import math
import posixpath
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from indexer.testpaths import is_test_path

#: A signal's answer: path -> (score in [0, 1], human reason).
Scored = dict[str, tuple[float, str]]

#: Each step back in a task's trail keeps this share of a seen file's recency score.
RECENCY_FALLOFF = 0.7
#: Signals listing many files cap their candidates so the blend stays cheap.
MAX_PER_SIGNAL = 200
QUERY_TOP_K = 30
#: Files read from the query's search once per task: test files rank low in search (it demotes them), so the
#: tests signal looks further down the list than ``query_match`` does.
QUERY_POOL = 100
#: How many earlier files of a task lend their import links to the candidates.
TRAIL_LINK_DEPTH = 5


class GraphView(Protocol):
    """What prediction needs from the index; paths are workspace-relative POSIX strings."""

    def files(self) -> list[str]: ...
    def imports_of(self, path: str) -> set[str]: ...
    def imported_by(self, path: str) -> set[str]: ...
    def tests_of(self, path: str) -> set[str]: ...
    def targets_of_tests(self, path: str) -> set[str]: ...
    def search_files(self, query: str, k: int) -> list[tuple[str, float]]: ...


@dataclass
class StaticGraph:
    """A GraphView over plain dicts: for a workspace without an index, benchmarks and tests."""

    paths: list[str] = field(default_factory=list)
    imports: dict[str, set[str]] = field(default_factory=dict)
    tests: dict[str, set[str]] = field(default_factory=dict)  # test file -> files it tests
    search: Callable[[str, int], list[tuple[str, float]]] | None = None

    def __post_init__(self) -> None:
        self._importers: dict[str, set[str]] = {}
        for src, dsts in self.imports.items():
            for dst in dsts:
                self._importers.setdefault(dst, set()).add(src)
        self._tested: dict[str, set[str]] = {}
        for test, targets in self.tests.items():
            for target in targets:
                self._tested.setdefault(target, set()).add(test)

    def files(self) -> list[str]:
        return self.paths

    def imports_of(self, path: str) -> set[str]:
        return self.imports.get(path, set())

    def imported_by(self, path: str) -> set[str]:
        return self._importers.get(path, set())

    def tests_of(self, path: str) -> set[str]:
        return self._tested.get(path, set())

    def targets_of_tests(self, path: str) -> set[str]:
        return self.tests.get(path, set())

    def search_files(self, query: str, k: int) -> list[tuple[str, float]]:
        return self.search(query, k) if self.search else []


def _spread(paths: Iterable[str], reason: str, exclude: str | None = None) -> Scored:
    """Score each of n linked files 1/sqrt(n): one link of two means more than one of a hundred."""
    found = sorted(p for p in set(paths) if p != exclude)[:MAX_PER_SIGNAL]
    if not found:
        return {}
    score = 1.0 / math.sqrt(len(found))
    return {p: (score, reason) for p in found}


def recent_in_task(trail: Sequence[str]) -> Scored:
    """Files seen earlier in this task, the more recent the higher (agents go back: ~47% of moves)."""
    out: Scored = {}
    current = trail[-1] if trail else None
    for steps, path in enumerate(reversed(trail[:-1]), start=1):
        if path != current and path not in out:
            plural = "s" if steps > 1 else ""
            out[path] = (RECENCY_FALLOFF ** (steps - 1), f"seen {steps} step{plural} ago in this task")
    return out


def returns_in_task(visits: Mapping[str, int], current: str | None) -> Scored:
    """Files this task keeps coming back to."""
    counts = {p: n for p, n in visits.items() if p != current}
    if not counts:
        return {}
    top = max(counts.values())
    return {p: (n / top, f"visited {n} time{'s' if n > 1 else ''} in this task") for p, n in counts.items()}


def imported_by_current(graph: GraphView, current: str | None) -> Scored:
    """Files the current file imports."""
    return _spread(graph.imports_of(current), "imported by the current file", current) if current else {}


def importers_of_current(graph: GraphView, current: str | None) -> Scored:
    """Files that import the current file."""
    return _spread(graph.imported_by(current), "imports the current file", current) if current else {}


def test_links(graph: GraphView, current: str | None) -> Scored:
    """Tests of the current file, and the code the current test file exercises."""
    if not current:
        return {}
    out = _spread(graph.tests_of(current), "tests the current file", current)
    out.update(_spread(graph.targets_of_tests(current), "tested by the current file", current))
    return out


def linked_to_task(graph: GraphView, trail: Sequence[str]) -> Scored:
    """Files importing or imported by the task's earlier files (not the current one), recent ones first."""
    out: Scored = {}
    seen = set(trail)
    for steps, path in enumerate(reversed(trail[:-1]), start=1):
        links = (graph.imports_of(path) | graph.imported_by(path)) - seen
        for other, (score, _) in _spread(links, "").items():
            score *= RECENCY_FALLOFF ** (steps - 1)
            if score > out.get(other, (0.0, ""))[0]:
                out[other] = (score, f"linked by imports to {path}")
        if steps >= TRAIL_LINK_DEPTH:
            break
    return out


def same_directory(files: Iterable[str], current: str | None) -> Scored:
    """Files in the current file's folder (23-42% of agent moves stay in the folder)."""
    if not current:
        return {}
    folder = posixpath.dirname(current)
    return _spread((p for p in files if posixpath.dirname(p) == folder), "in the same directory", current)


def query_match(hits: Sequence[tuple[str, float]]) -> Scored:
    """Files the task's query or problem statement retrieves, scaled to the best hit."""
    hits = [(p, s) for p, s in hits if s > 0]
    if not hits:
        return {}
    # By rank, not raw score: retrieval scores are compressed, the order is what carries the information.
    return {p: (1.0 / math.sqrt(rank), f"matches the task description (#{rank})")
            for rank, (p, _) in enumerate(hits, start=1)}


def task_tests(hits: Sequence[tuple[str, float]], seen: Collection[str]) -> Scored:
    """Test files the task's query retrieves, by rank among the tests (about half of agents' new files are tests).

    Search ranks tests below the code they test unless the query asks for tests, so ``query_match`` rarely
    reaches them; ranked among themselves, the query's tests are the ones an agent opens to check or add a test.
    """
    tests = [p for p, score in hits if score > 0 and p not in seen and is_test_path(p)]
    return {p: (1.0 / math.sqrt(rank), f"a test the task description points at (#{rank} of the tests)")
            for rank, p in enumerate(tests, start=1)}


def tests_run_in_task(runs: Sequence[str], seen: Collection[str]) -> Scored:
    """Test files run in this task (``test_result`` events) and not opened yet, the latest runs first.

    An agent's harness runs tests after its edits; about one move in twelve to a new file goes to a test file run
    earlier in the task (to read why it failed, or to add a case). ``runs`` is in run order, oldest first.
    """
    out: Scored = {}
    for path in reversed(runs):
        if path not in seen and path not in out:
            rank = len(out) + 1
            out[path] = (1.0 / math.sqrt(rank), "ran as a test in this task")
            if rank >= MAX_PER_SIGNAL:
                break
    return out


def markov_next(probs: Mapping[str, float], reason_of: Callable[[str], str | None]) -> Scored:
    """Files that followed the current one before, by transition probability (not rescaled: certainty counts)."""
    best = sorted(probs.items(), key=lambda kv: (-kv[1], kv[0]))[:MAX_PER_SIGNAL]
    return {p: (v, reason_of(p) or "followed it before") for p, v in best}


def co_changed(confidence: Mapping[str, float], reason_of: Callable[[str], str | None]) -> Scored:
    """Files that changed (or were visited) together with the task's files, by combined ROSE confidence in [0, 1]."""
    best = sorted(confidence.items(), key=lambda kv: (-kv[1], kv[0]))[:MAX_PER_SIGNAL]
    return {p: (v, reason_of(p) or "changed together before") for p, v in best}


def popular(weights: Mapping[str, float], counts: Mapping[str, int]) -> Scored:
    """Files visited most often overall (decayed)."""
    best = sorted(weights.items(), key=lambda kv: (-kv[1], kv[0]))[:MAX_PER_SIGNAL]
    if not best:
        return {}
    top = best[0][1]
    return {p: (w / top, f"often visited ({counts.get(p, 0)} times)") for p, w in best}


def recent_overall(recent: Sequence[str]) -> Scored:
    """Files visited lately in any task, most recent first."""
    return {p: (RECENCY_FALLOFF ** i, "visited recently") for i, p in enumerate(recent[:MAX_PER_SIGNAL])}
