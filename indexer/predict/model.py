"""The next-file predictor: named signals blended by weights learned online (softmax ranking, SGD).

Deterministic: the same events in the same order give the same model and the same predictions
(ties break on the path, nothing reads the clock unless the caller passes ``at``).
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from indexer import git
from indexer.predict import signals as sig
from indexer.predict.cochange import CoChange, git_commits
from indexer.predict.experts import BLEND, ExpertSwitch, lead_key, rank_of
from indexer.predict.markov import DECAY, Markov

SIGNALS = ("recent_in_task", "returns_in_task", "markov", "co_change", "imported_by_current",
           "importers_of_current", "linked_to_task", "test_links", "same_directory", "query_match", "task_tests",
           "tests_run_in_task", "popular", "recent_overall")
#: Priors for a new workspace, from the agent-trace statistics: returns to seen files lead,
#: then habits (Markov, co-change), the task text and the import graph; folders and popularity are weak.
PRIOR_WEIGHTS = {
    "recent_in_task": 3.0, "returns_in_task": 1.0, "markov": 2.0, "co_change": 1.5,
    "imported_by_current": 1.5, "importers_of_current": 1.0, "linked_to_task": 0.5, "test_links": 1.0,
    "same_directory": 1.0, "query_match": 2.0, "task_tests": 1.0, "tests_run_in_task": 2.0, "popular": 0.5,
    "recent_overall": 0.5,
}
#: Separate blends for a task's first file (no trail: habits and recency across tasks matter)
#: and for moves inside a task (its own trail and the current file's links matter).
PHASES = ("start", "task")
LEARNING_RATE = 0.05
#: Pull back toward the prior on each update, so a run of odd tasks cannot wreck the blend.
PRIOR_PULL = 0.002
DEFAULT_TASK = "_"
#: Tasks whose trails are kept (least recently used dropped); each trail keeps its last MAX_TRAIL files.
MAX_TASKS = 64
MAX_TRAIL = 50
#: Test files remembered per task from its test runs (latest kept).
MAX_TESTS_RUN = 50
MAX_RECENT = 100
#: Two events of one task further apart than this (seconds, when ``at`` is given) are not a transition.
SESSION_GAP_S = 3600.0
#: Popularity weights are stored scaled up by GROWTH**clock and rescaled before they overflow.
GROWTH = 1.0 / DECAY
RESCALE_ABOVE = 1e100
MAX_REASONS = 3
#: Co-change evidence from a task's earlier files fades slowly (commits are sets, not sequences).
COCHANGE_FALLOFF = 0.9
#: A commit's or task's co-change evidence halves after this many newer ones: coupling follows the code as it
#: is refactored (benchmarks/README.md: within-commit MRR flask / requests .573 / .594 without decay, 1000 ->
#: .584 / .610, 200 -> .607 / .643, 100 -> .618 / .629).
COCHANGE_HALF_LIFE = 200
#: A task with no files yet borrows this many of the latest files overall as its co-change context.
CONTEXT_RECENT = 5
#: Event kinds accepted (all count as a visit today; the kind is checked so a typo fails loudly).
KINDS = ("opened", "edited", "requested")


@dataclass(frozen=True, slots=True)
class Prediction:
    """A predicted next file, its probability-like score and why."""

    path: str
    score: float
    reasons: list[str]


@dataclass(slots=True)
class Trail:
    """One task's files in visit order (consecutive repeats collapsed), its query and the test files it ran."""

    files: list[str] = field(default_factory=list)
    visits: dict[str, int] = field(default_factory=dict)
    query: str | None = None
    last_at: float | None = None
    hits: list[tuple[str, float]] | None = None  # query retrieval, computed once per query
    tests_run: list[str] = field(default_factory=list)  # test files run in the task, oldest run first


class Predictor:
    """Observes file events and predicts the next files, online, with reasons."""

    def __init__(self, graph: sig.GraphView | None = None, store=None, *,
                 signals: Collection[str] = SIGNALS, learn_weights: bool = True) -> None:
        unknown = set(signals) - set(SIGNALS)
        if unknown:
            raise ValueError(f"unknown prediction signals {sorted(unknown)}; valid: {', '.join(SIGNALS)}")
        self._graph = graph if graph is not None else sig.StaticGraph()
        self.store = store
        self.signals = tuple(s for s in SIGNALS if s in signals)
        self.learn_weights = learn_weights
        self._lock = threading.RLock()
        #: What this process learned since its model was loaded or saved, as (method, arguments): replayed onto
        #: the stored state when another process saved meanwhile (``PredictStore.save``).
        self._journal: list[tuple[str, dict]] = []
        self._replaying = False
        self._loaded_at = 0  # the store's generation this model was loaded or last saved at
        self._clear()
        if store is not None:
            self.load()

    @property
    def graph(self) -> sig.GraphView:
        """The index view the structure signals read."""
        return self._graph

    @graph.setter
    def graph(self, graph: sig.GraphView) -> None:
        self._graph = graph
        self._changed()

    def _changed(self) -> None:
        """Any change to the model or its inputs invalidates the cached ranking."""
        self._version += 1
        self._cached = None

    def _clear(self) -> None:
        self._version = 0
        self._cached: tuple[str, int, tuple] | None = None  # (task, version, ranking) of the last plain _rank
        self.markov = Markov()
        self.cochange = CoChange(COCHANGE_HALF_LIFE)
        self.weights = {phase: {s: PRIOR_WEIGHTS[s] for s in self.signals} for phase in PHASES}
        self.switch = ExpertSwitch(PHASES, self.signals)
        self.trails: OrderedDict[str, Trail] = OrderedDict()
        self.popularity: dict[str, float] = {}
        self.visit_counts: dict[str, int] = {}
        self.recent: list[str] = []
        self.clock = 0
        self.mined_head: str | None = None
        self.gone: set[str] = set()
        self.online = {"predictions": 0, "scored": 0, "hit1": 0, "hit5": 0, "rr": 0.0}

    # ------------------------------------------------------------------ #
    # learning
    # ------------------------------------------------------------------ #
    def observe(self, path: str, *, task_id: str | None = None, kind: str = "opened",
                at: float | None = None) -> None:
        """Learn from one file event of a task (the model updates before the next call returns)."""
        if kind not in KINDS:
            raise ValueError(f"unknown event kind {kind!r} for {path}; valid: {', '.join(KINDS)}")
        with self._lock:
            self._log("observe", path=path, task_id=task_id, kind=kind, at=at)
            key = task_id or DEFAULT_TASK
            trail = self._trail(key)
            gap = at is not None and trail.last_at is not None and at - trail.last_at > SESSION_GAP_S
            trail.last_at = at if at is not None else trail.last_at
            if trail.files and trail.files[-1] == path:
                return
            prev = trail.files[-1] if trail.files else (self.recent[0] if self.recent else None)
            if prev is not None and not gap:
                if self.learn_weights:
                    self._learn_blend(key, path)
                prev2 = trail.files[-2] if len(trail.files) >= 2 else None
                self.markov.learn(prev2, prev, path)
            self._changed()
            self.cochange.add_to_open(key, path)
            self.gone.discard(path)
            self._count_visit(path)
            trail.files.append(path)
            del trail.files[:-MAX_TRAIL]
            trail.visits[path] = trail.visits.get(path, 0) + 1

    def observe_test_run(self, path: str, *, task_id: str | None = None) -> None:
        """A test file of the task was run (a ``test_result`` event): a candidate, not a visit.

        Nothing that counts visits changes (the trail, recency, returns, Markov, co-change, popularity); the
        ``tests_run_in_task`` signal ranks the task's run tests that it has not opened yet, latest runs first.
        """
        with self._lock:
            self._log("observe_test_run", path=path, task_id=task_id)
            trail = self._trail(task_id or DEFAULT_TASK)
            if trail.tests_run and trail.tests_run[-1] == path:
                return
            if path in trail.tests_run:
                trail.tests_run.remove(path)
            trail.tests_run.append(path)
            del trail.tests_run[:-MAX_TESTS_RUN]
            self._changed()

    def learn_commit(self, files: Iterable[str]) -> bool:
        """Learn a set of files changed together (a commit, a finished task); False when too large."""
        with self._lock:
            files = list(files)
            self._log("learn_commit", files=files)
            self._changed()
            return self.cochange.learn_set(files)

    def mine_git(self, root: str | Path) -> int:
        """Learn co-change from the git history of ``root`` not mined yet; returns the commits learned."""
        with self._lock:
            head = git.resolve(Path(root))
            if head is None or head == self.mined_head:
                return 0
            commits = git_commits(Path(root), since=self.mined_head)
            learned = sum(self.learn_commit(files) for files in commits)
            self._log("_set_mined_head", head=head)
            self._set_mined_head(head)
            return learned

    def _set_mined_head(self, head: str) -> None:
        self.mined_head = head
        self._changed()

    def refresh(self) -> None:
        """The index changed under the graph view: rank afresh on the next call."""
        with self._lock:
            self._changed()

    def forget(self, paths: Iterable[str]) -> None:
        """Files deleted (or renamed away): never predict them again unless they come back."""
        with self._lock:
            paths = list(paths)
            self._log("forget", paths=paths)
            self.gone.update(paths)
            self._changed()

    def set_query(self, task_id: str | None, query: str | None) -> None:
        """Remember a task's query or problem statement for the retrieval signal."""
        with self._lock:
            trail = self._trail(task_id or DEFAULT_TASK)
            if query != trail.query:
                self._log("set_query", task_id=task_id, query=query)
                trail.query, trail.hits = query, None
                self._changed()

    def _log(self, method: str, **arguments) -> None:
        """Journal one change (under the lock), unless it is being replayed."""
        if self.store is not None and not self._replaying:
            self._journal.append((method, arguments))

    def _rebase(self, stored: dict | None) -> dict:
        """This process's changes since its load, replayed onto ``stored`` (another process's save): the
        merged state, now also this model's."""
        journal, self._journal = self._journal, []
        self._replaying = True
        try:
            if stored is None:
                self._clear()
            else:
                self.from_state(stored)
            for method, arguments in journal:
                getattr(self, method)(**arguments)
        finally:
            self._replaying = False
        return self.to_state()

    def _trail(self, key: str) -> Trail:
        trail = self.trails.pop(key, None) or Trail()
        self.trails[key] = trail
        while len(self.trails) > MAX_TASKS:
            self.trails.popitem(last=False)
        return trail

    def _count_visit(self, path: str) -> None:
        self.clock += 1
        scale = GROWTH ** self.clock
        if scale > RESCALE_ABOVE:
            self.popularity = {p: w / scale for p, w in self.popularity.items()}
            self.clock, scale = 0, 1.0
        self.popularity[path] = self.popularity.get(path, 0.0) + scale
        self.visit_counts[path] = self.visit_counts.get(path, 0) + 1
        self.recent = [path] + [p for p in self.recent if p != path][:MAX_RECENT - 1]

    def _learn_blend(self, key: str, actual: str) -> None:
        """One softmax-ranking gradient step toward the signals that scored ``actual``, a switch update; online stats."""
        phase, ranked = self._rank(key, None, ())
        weights = self.weights[phase]
        rank = rank_of(ranked, actual, self.switch.best(phase))
        self.switch.update(phase, ranked, actual)
        self.online["scored"] += 1
        self.online["hit1"] += rank == 1
        self.online["hit5"] += 0 < rank <= 5
        self.online["rr"] += 1.0 / rank if rank else 0.0
        if not ranked:
            return
        probs = _softmax([z for _, z, _ in ranked])
        grad = {s: 0.0 for s in weights}
        for (path, _, feats), p in zip(ranked, probs):
            for s, (x, _) in feats.items():
                grad[s] -= p * x
                if path == actual:
                    grad[s] += x
        for s, w in weights.items():
            step = LEARNING_RATE * grad[s] - PRIOR_PULL * (w - PRIOR_WEIGHTS[s])
            weights[s] = max(0.0, w + step)

    # ------------------------------------------------------------------ #
    # predicting
    # ------------------------------------------------------------------ #
    def predict(self, current: str | None = None, *, task_id: str | None = None, top_k: int = 10,
                query: str | None = None, exclude: Collection[str] = ()) -> list[Prediction]:
        """The ``top_k`` likeliest next files after ``current`` (default: the task's last file), with reasons."""
        if top_k < 1:
            raise ValueError(f"top_k must be >= 1, not {top_k}")
        with self._lock:
            key = task_id or DEFAULT_TASK
            if query is not None:
                self.set_query(key, query)
            self.online["predictions"] += 1
            phase, ranked = self._rank(key, current, exclude)
            weights = self.weights[phase]
            probs = dict(zip((path for path, _, _ in ranked), _softmax([z for _, z, _ in ranked])))
            expert = self.switch.best(phase) if self.learn_weights else BLEND
            if expert != BLEND:
                ranked = sorted(ranked, key=lead_key(expert))
                # The scores shown follow the order used: the blend's probabilities, largest first, go to the
                # expert's ranking (each the blend's estimate for a file at that rank), so none contradicts it.
                by_rank = sorted(probs.values(), reverse=True)
                probs = {path: by_rank[i] for i, (path, _, _) in enumerate(ranked)}
            out = []
            for path, _, feats in ranked[:top_k]:
                parts = sorted(((weights[s] * x, r) for s, (x, r) in feats.items()), key=lambda t: -t[0])
                reasons = [r for c, r in parts[:MAX_REASONS] if c > 0]
                if expert in feats:  # the signal that ranked it comes first
                    lead = feats[expert][1]
                    reasons = [lead, *(r for r in reasons if r != lead)][:MAX_REASONS]
                out.append(Prediction(path, round(probs[path], 4), _worded(reasons, task_id, phase)))
            return out

    def _rank(self, key: str, current: str | None, exclude: Collection[str]):
        """The phase, and every candidate best first: (path, blended logit, {signal: (score, reason)}); cached."""
        plain = current is None and not exclude
        if plain and self._cached is not None and self._cached[:2] == (key, self._version):
            return self._cached[2]
        ranked = self._rank_fresh(key, current, exclude)
        if plain:
            self._cached = (key, self._version, ranked)
        return ranked

    def _rank_fresh(self, key: str, current: str | None, exclude: Collection[str]):
        trail = self.trails.get(key) or Trail()
        files = list(trail.files)
        if current is not None and (not files or files[-1] != current):
            files.append(current)
        phase = "task" if files else "start"
        weights = self.weights[phase]
        current = files[-1] if files else (self.recent[0] if self.recent else None)
        prev2 = files[-2] if len(files) >= 2 else None
        feats: dict[str, dict[str, tuple[float, str]]] = {}
        for name in self.signals:
            for path, scored in self._signal(name, trail, files, current, prev2).items():
                feats.setdefault(path, {})[name] = scored
        known = self.graph.files()
        valid = set(known) if known else None
        drop = set(exclude) | self.gone | ({current} if current else set())
        ranked = []
        for path, f in feats.items():
            if path in drop or (valid is not None and path not in valid):
                continue
            ranked.append((path, sum(weights[s] * x for s, (x, _) in f.items()), f))
        ranked.sort(key=lambda t: (-t[1], t[0]))
        return phase, ranked

    def _signal(self, name: str, trail: Trail, files: list[str], current: str | None,
                prev2: str | None) -> sig.Scored:
        """Run one named signal on the task's state."""
        if name == "recent_in_task":
            return sig.recent_in_task(files)
        if name == "returns_in_task":
            return sig.returns_in_task(trail.visits, current)
        if name == "markov":
            return sig.markov_next(self.markov.scores(prev2, current), lambda p: self.markov.reason(current, p))
        if name == "co_change":
            context = _recency_weights(files or self.recent[:CONTEXT_RECENT], COCHANGE_FALLOFF)
            return sig.co_changed(self.cochange.noisy_or(context), lambda p: self.cochange.reason(context, p))
        if name == "imported_by_current":
            return sig.imported_by_current(self.graph, current)
        if name == "importers_of_current":
            return sig.importers_of_current(self.graph, current)
        if name == "linked_to_task":
            return sig.linked_to_task(self.graph, files)
        if name == "test_links":
            return sig.test_links(self.graph, current)
        if name == "same_directory":
            return sig.same_directory(self.graph.files(), current)
        if name == "query_match":
            return sig.query_match(self._query_hits(trail)[:sig.QUERY_TOP_K])
        if name == "task_tests":
            return sig.task_tests(self._query_hits(trail), trail.visits)
        if name == "tests_run_in_task":
            return sig.tests_run_in_task(trail.tests_run, trail.visits)
        if name == "popular":
            return sig.popular(self.popularity, self.visit_counts)
        return sig.recent_overall(self.recent)

    def _query_hits(self, trail: Trail) -> list[tuple[str, float]]:
        """The files the task's query retrieves, best first (searched once per query)."""
        if trail.query and trail.hits is None:
            trail.hits = self.graph.search_files(trail.query, sig.QUERY_POOL)
        return trail.hits or []

    # ------------------------------------------------------------------ #
    # figures and persistence
    # ------------------------------------------------------------------ #
    def stats(self) -> dict:
        """Predictions made, and how well the model ranked each observed move before seeing it."""
        with self._lock:
            n = self.online["scored"]
            return {
                "predictions": self.online["predictions"],
                "moves_scored": n,
                "hit_at_1": round(self.online["hit1"] / n, 4) if n else None,
                "hit_at_5": round(self.online["hit5"] / n, 4) if n else None,
                "mrr": round(self.online["rr"] / n, 4) if n else None,
                "weights": {phase: {s: round(w, 3) for s, w in ws.items()} for phase, ws in self.weights.items()},
                "ranking": {phase: self.switch.best(phase) for phase in PHASES},
                "files_known": len(self.visit_counts),
                "transactions": self.cochange.transactions,
            }

    def to_state(self) -> dict:
        """The whole model as JSON-ready data."""
        with self._lock:
            return {
                "markov": self.markov.to_state(),
                "cochange": self.cochange.to_state(),
                "weights": {phase: dict(ws) for phase, ws in self.weights.items()},
                "experts": self.switch.to_state(),
                "trails": [[k, t.files, sorted(t.visits.items()), t.query, t.last_at, t.tests_run]
                           for k, t in self.trails.items()],
                "popularity": sorted(self.popularity.items()),
                "visit_counts": sorted(self.visit_counts.items()),
                "recent": self.recent,
                "clock": self.clock,
                "mined_head": self.mined_head,
                "gone": sorted(self.gone),
                "online": dict(self.online),
            }

    def from_state(self, state: dict) -> None:
        """Replace the model with ``to_state`` output."""
        with self._lock:
            self._clear()
            self.markov = Markov.from_state(state["markov"])
            self.cochange = CoChange.from_state(state["cochange"], COCHANGE_HALF_LIFE)
            for phase, ws in state["weights"].items():
                if phase in self.weights:
                    self.weights[phase].update({s: w for s, w in ws.items() if s in self.weights[phase]})
            self.switch.load_state(state.get("experts", {}))
            for key, files, visits, query, last_at, *rest in state["trails"]:  # rest: tests run (newer states)
                self.trails[key] = Trail(list(files), dict(visits), query, last_at,
                                         tests_run=list(rest[0]) if rest else [])
            self.popularity = dict(state["popularity"])
            self.visit_counts = dict(state["visit_counts"])
            self.recent = list(state["recent"])
            self.clock = state["clock"]
            self.mined_head = state["mined_head"]
            self.gone = set(state["gone"])
            self.online.update(state["online"])

    def save(self) -> None:
        """Write the model to the store (no-op without one), merged with what other processes saved since."""
        if self.store is None:
            return
        with self._lock:
            self._loaded_at = self.store.save(self.to_state(), self._loaded_at, self._rebase)
            self._journal.clear()

    def load(self) -> bool:
        """Read the model back from the store; False when none was saved."""
        if self.store is None:
            return False
        with self._lock:
            state, self._loaded_at = self.store.load()
            self._journal.clear()
            if state is None:
                return False
            self.from_state(state)
            return True

    def reset(self) -> None:
        """Forget everything learned, in memory and in the store."""
        with self._lock:
            self._clear()
            self._journal.clear()
            if self.store is not None:
                self._loaded_at = self.store.reset()


def _worded(reasons: list[str], task_id: str | None, phase: str) -> list[str]:
    """Reasons in the user's terms: outside any task the moves are a session's, and a task with no file yet has
    no current file of its own, only the last file opened (in any task)."""
    if task_id is None:
        reasons = [r.replace(" in this task", " in this session") for r in reasons]
    if phase == "start":
        reasons = [r.replace("the current file", "the last file opened") for r in reasons]
    return reasons


def _softmax(logits: list[float]) -> list[float]:
    """Probabilities over the candidates plus an 'some other file' option at logit 0."""
    if not logits:
        return []
    top = max(max(logits), 0.0)
    exps = [math.exp(z - top) for z in logits]
    total = sum(exps) + math.exp(-top)
    return [e / total for e in exps]


def _recency_weights(files: list[str], falloff: float) -> dict[str, float]:
    """Each distinct file of a trail weighted by how recently it was seen (latest = 1)."""
    out: dict[str, float] = {}
    for steps, path in enumerate(reversed(files)):
        out.setdefault(path, falloff ** steps)
    return out
