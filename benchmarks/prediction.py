"""Next-file prediction benchmark: (a) agent traces, (b) git history, (c) prefetch hit rate; baselines alongside.

Usage: /work/venv/bin/python benchmarks/prediction.py [--bench DIR] [--graphs index|light] [--work DIR] [--corpora DIR]
       [--graph-cache FILE] [--vectors] [--seed N] [--json] [--skip-traces] [--skip-git]

(a) Moatless traces (``trajectories/moatless_lite_dev.jsonl``): one model per repository, tasks in ``created_at``
    order (joined from ``swebench/lite_dev.jsonl``); before each access after the first, rank the next file.
    The test files the agent's harness ran (``auto_test_run`` actions) since the previous access are fed first,
    as the server sees ``test_result`` events (``Predictor.observe_test_run``); the model re-ranks and prefetches.
    The structure and the problem statement's search come from one of two sources:
    ``--graphs index`` (default): codeahead's own index of the repository at the task's base commit (one working
    folder per repository under ``--work``, moved from commit to commit by ``git diff`` and indexed incrementally),
    read through ``SqliteGraphView`` as the server's predictor reads it: file-level imports and test links from the
    graph, and ``Workspace.ranked`` (BM25 + code signals) for the problem statement, best node per file; with
    ``--vectors`` each commit's index is embedded too (the ``vectors`` extra) and the search fuses them, as a
    server with the extra does.
    ``--graphs light``: a quicker stand-in read straight from the git mirror (``git ls-tree`` + ``git cat-file``):
    imports parsed with ``ast`` and resolved with ``indexer.modules``, test files linked to what they import, and
    a BM25 (binary term frequency) over file paths + contents. Its search is much weaker than the server's (the
    agent's first file is its top hit for 29% of tasks, against 50% for the index), so it under-rates the query.
    ``--graph-cache`` keeps the per-task graphs; an index graph is keyed by a hash of the engine sources it came
    from (``ENGINE_SOURCES``), so a change to search or parsing rebuilds it (16 minutes for the 155 commits here).
(b) Git history (``nextfile/*.jsonl``): train on the first 80% of commits, test the last 20% online; within-commit
    (seeded random reveal order, predict the unrevealed files) and next-commit (predict commit t+1 after t).
(c) Prefetch: replay (a) through ``Prefetcher``; at the task's start (the server prefetches on ``task_started``)
    and after each access, prefetch the top k; a next access already built is a hit. The build callable is instant
    here and every prefetch completes before the next access, so this measures prediction, not build speed
    (``builds_per_access`` is the work it asks for). Three figures: ``next_in_top_k`` (the access was in the top k
    predicted just before it), ``served_from_prefetch_cache`` (strict: a prefetched entry of this task, <= 64 kept,
    was there) and ``served_from_cache`` (that, or the file was already requested earlier in the task: the server
    keeps the context it built for a request in its answer cache, so a return to a file is served without a build;
    a new task is a new checkout and starts empty).
"""

from __future__ import annotations

import argparse
import ast
import functools
import hashlib
import json
import math
import pickle
import random
import re
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT_ROOT))

# benchmarks/ is on sys.path when run as a script
from corpora import DEFAULT_CORPORA, mirror_dir, require_file  # noqa: E402

from indexer.modules import absolute_module, module_names, package_of  # noqa: E402
from indexer.predict import SIGNALS, Predictor, Prefetcher, SqliteGraphView, StaticGraph  # noqa: E402
from indexer.predict.cochange import MAX_SET, CoChange  # noqa: E402

DEFAULT_BENCH = Path("/work/shared/bench")
DEFAULT_WORK = DEFAULT_CORPORA / "prediction-work"
GRAPH_SOURCES = ("index", "light")
#: Files kept from the problem statement's search (the model reads signals.QUERY_POOL of them).
HITS_KEPT = 100
#: The engine code an index graph comes from: a cached graph built by other code is rebuilt, not reused.
ENGINE_SOURCES = ("indexer/search", "indexer/parse", "indexer/graph", "indexer/store", "indexer/indexing.py",
                  "indexer/modules.py", "indexer/predict/store.py")
KS = (1, 5, 10)
TRAIN_SHARE = 0.8
PREFETCH_KS = (5, 10, 20)
BM25_K1, BM25_B = 1.2, 0.75
_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_BLOCKS = ("body", "orelse", "finalbody", "handlers", "cases")
BASELINES = ("most_frequent", "most_recent", "co_change", "markov1", "markov3_then_recency")


# --------------------------------------------------------------------------- #
# metrics
# --------------------------------------------------------------------------- #
@dataclass
class Metrics:
    """hit@k and MRR over ranked predictions (rank 0 = the target was not ranked)."""

    ranks: list[int] = field(default_factory=list)

    def add(self, ranking: list[str], targets: set[str]) -> None:
        self.ranks.append(next((i for i, p in enumerate(ranking, start=1) if p in targets), 0))

    def summary(self) -> dict:
        n = len(self.ranks) or 1
        out = {f"hit@{k}": round(sum(0 < r <= k for r in self.ranks) / n, 4) for k in KS}
        out["mrr"] = round(sum(1 / r for r in self.ranks if r) / n, 4)
        out["n"] = len(self.ranks)
        return out


# --------------------------------------------------------------------------- #
# baselines (kept independent of the model's code, except ROSE co-change counting)
# --------------------------------------------------------------------------- #
class Baselines:
    """Most frequent, most recent, co-change, first-order Markov and Markov top-3 then recency."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self.last_seen: dict[str, int] = {}
        self.moves: dict[str, Counter[str]] = {}
        self.cochange = CoChange()
        self.clock = 0
        self.prev: str | None = None
        self.gone: set[str] = set()

    def forget(self, paths: list[str]) -> None:
        """Deleted files are never predicted again (unless they come back)."""
        self.gone.update(paths)

    def observe(self, path: str) -> None:
        """One access in the global event stream."""
        self.gone.discard(path)
        self.clock += 1
        self.counts[path] += 1
        self.last_seen[path] = self.clock
        if self.prev is not None and self.prev != path:
            self.moves.setdefault(self.prev, Counter())[path] += 1
        self.prev = path

    def end_set(self, files: list[str]) -> None:
        """A task or commit finished: learn its files as one transaction."""
        self.cochange.learn_set(files)

    def rankings(self, current: str | None, context: list[str], exclude: set[str]) -> dict[str, list[str]]:
        """Each baseline's top 10 (ties broken by path)."""
        def top(scores: dict[str, float]) -> list[str]:
            ranked = sorted(scores.items(), key=lambda kv: (-kv[1], kv[0]))
            return [p for p, _ in ranked if p not in exclude and p not in self.gone][:10]

        recent = top({p: float(t) for p, t in self.last_seen.items()})
        markov = top(dict(self.moves.get(current, {}))) if current else []
        mixed = markov[:3] + [p for p in recent if p not in markov[:3]]
        return {
            "most_frequent": top(dict(self.counts)),
            "most_recent": recent,
            "co_change": top(self.cochange.scores({p: 1.0 for p in context})),
            "markov1": markov,
            "markov3_then_recency": mixed[:10],
        }


# --------------------------------------------------------------------------- #
# light structure at a commit, read from the git mirror
# --------------------------------------------------------------------------- #
def _tokens(text: str) -> set[str]:
    """Identifier terms, lower-cased, with their snake_case parts."""
    out = set()
    for word in _WORD.findall(text):
        word = word.lower()
        out.add(word)
        out.update(p for p in word.split("_") if len(p) > 1)
    return out


def _raw_imports(source: bytes) -> list[tuple[str, str | None, int]]:
    """(module, name, level) of every import statement; [] when the file does not parse."""
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return []
    out, stack = [], list(tree.body)
    while stack:  # statements only: imports never hide inside expressions, and this skips most nodes
        node = stack.pop()
        if isinstance(node, ast.Import):
            out.extend((a.name, None, 0) for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            out.extend((node.module or "", a.name, node.level) for a in node.names)
        for name in _BLOCKS:
            stack.extend(getattr(node, name, ()))
    return out


class TreeGraphs:
    """StaticGraphs of one repository at given commits, sharing a per-blob parse cache."""

    def __init__(self, git_dir: Path) -> None:
        self.git_dir = git_dir
        self.blobs: dict[str, tuple[list, frozenset[str], int]] = {}  # sha -> (imports, terms, length)

    def _git(self, *args: str, data: bytes | None = None) -> bytes:
        return subprocess.run(["git", f"--git-dir={self.git_dir}", *args], input=data, capture_output=True,
                              check=True).stdout

    def _read_blobs(self, shas: list[str]) -> None:
        if not shas:
            return
        out = self._git("cat-file", "--batch", data="".join(s + "\n" for s in shas).encode())
        pos = 0
        for sha in shas:
            header_end = out.index(b"\n", pos)
            size = int(out[pos:header_end].split()[2])
            body = out[header_end + 1: header_end + 1 + size]
            pos = header_end + 1 + size + 1
            terms = _tokens(body.decode("utf-8", "replace"))
            self.blobs[sha] = (_raw_imports(body), frozenset(terms), len(terms))

    def graph(self, commit: str, query: str) -> tuple:
        """The light graph at ``commit`` as (files, imports, tests, BM25 hits of ``query`` over paths + contents)."""
        listing = self._git("ls-tree", "-r", "--format=%(objectname) %(path)", commit).decode()
        tree = dict(reversed(line.split(" ", 1)) for line in listing.splitlines() if line.endswith(".py"))
        self._read_blobs(sorted({sha for sha in tree.values() if sha not in self.blobs}))
        modules = module_names(tree)
        by_module = {m: p for p, m in modules.items()}
        imports: dict[str, set[str]] = {}
        for path, sha in tree.items():
            package = package_of(modules[path], path)
            found = set()
            for module, name, level in self.blobs[sha][0]:
                base = absolute_module(package, module, level)
                target = by_module.get(f"{base}.{name}" if base and name else base) if name != "*" else None
                target = target or by_module.get(base)
                if target and target != path:
                    found.add(target)
            imports[path] = found
        by_name: dict[str, set[str]] = {}
        for p in tree:
            if not _is_test(p):
                by_name.setdefault(p.rsplit("/", 1)[-1], set()).add(p)
        tests = {p: imports[p] | by_name.get(_tested_name(p), set()) for p in tree if _is_test(p)}
        hits = _bm25(query, {p: self.blobs[sha] for p, sha in tree.items()})
        return sorted(tree), imports, tests, hits


def _is_test(path: str) -> bool:
    name = path.rsplit("/", 1)[-1]
    return name.startswith("test_") or name.endswith("_test.py") or "/tests/" in f"/{path}"


def _tested_name(test_path: str) -> str:
    """The file name a test's naming convention points at (test_foo.py -> foo.py)."""
    stem = test_path.rsplit("/", 1)[-1].removeprefix("test_").removesuffix("_test.py").removesuffix(".py")
    return f"{stem}.py"


@functools.lru_cache(maxsize=None)
def _path_tokens(path: str) -> frozenset[str]:
    return frozenset(_tokens(path.replace("/", " ").replace(".", " ")))


def _bm25(query: str, docs: dict[str, tuple[list, frozenset[str], int]]) -> list[tuple[str, float]]:
    """Top 50 files for ``query`` by BM25 (binary tf) over content terms plus path terms."""
    q = _tokens(query)
    if not q or not docs:
        return []
    terms = {p: (d[1] | _path_tokens(p), d[2]) for p, d in docs.items()}
    df = Counter(t for ts, _ in terms.values() for t in q & ts)
    n = len(terms)
    avg = sum(length for _, length in terms.values()) / n or 1.0
    scores = {}
    for path, (ts, length) in terms.items():
        norm = BM25_K1 * (1 - BM25_B + BM25_B * length / avg)
        s = sum(math.log(1 + (n - df[t] + 0.5) / (df[t] + 0.5)) * (1 + BM25_K1) / (1 + norm) for t in q & ts)
        if s > 0:
            scores[path] = s
    return sorted(scores.items(), key=lambda kv: (-kv[1], kv[0]))[:50]


class IndexGraphs:
    """The graph the server's predictor reads, from codeahead's own index of the repository at each commit.

    One working folder per repository, moved from base commit to base commit by ``git diff`` (as
    ``quality_swebench.py`` does) and indexed incrementally; the files, the file-level imports and test links and
    the problem statement's search are read through ``SqliteGraphView``, exactly as ``Workspace.predictor`` does.
    """

    def __init__(self, repo: str, work_root: Path, corpora: Path, vectors: bool = False) -> None:
        self.repo, self.corpora, self.vectors = repo, corpora, vectors
        self.work = work_root / repo.split("/")[-1]
        self._index_dir = tempfile.TemporaryDirectory(prefix="prediction-index-")
        self._ws = None

    def graph(self, commit: str, query: str) -> tuple:
        """(files, imports, tests, search hits of ``query``) of the repository at ``commit``."""
        from quality_swebench import sync_commit
        from indexer.workspace import Workspace

        self.work.mkdir(parents=True, exist_ok=True)
        sync_commit(self.repo, commit, self.work, self.corpora)
        if self._ws is None:
            self._ws = Workspace(self.work, index_dir=self._index_dir.name)
        self._ws.index()
        git_dir = mirror_dir(self.repo, self.corpora / "mirrors.json")
        if git_dir is not None:  # the history a developer at the base commit has (the search's ``history`` signal)
            self._ws.mine_history(git_dir, commit)
        if self.vectors and not self._ws.enable_vectors(wait=True):
            raise SystemExit("--vectors needs an embedder: pip install '.[vectors]'")
        view = SqliteGraphView(self._ws.reader, ranked=self._ws.ranked)
        files = view.files()
        conn = self._ws.reader()
        imports = _file_links(conn, "imports")
        tests = _file_links(conn, "tests")
        return files, imports, tests, view.search_files(query, HITS_KEPT)

    def close(self) -> None:
        """Close the index and delete it (the working folder stays, so the next run syncs from where it is)."""
        if self._ws is not None:
            self._ws.close()
        self._index_dir.cleanup()


_FILE_LINKS = """SELECT DISTINCT f1.path, f2.path FROM edges e
JOIN nodes n1 ON n1.id = e.src JOIN files f1 ON f1.id = n1.file_id
JOIN nodes n2 ON n2.id = e.dst JOIN files f2 ON f2.id = n2.file_id
WHERE e.kind = ? AND f1.id != f2.id"""


def _file_links(conn, kind: str) -> dict[str, set[str]]:
    """Every file's linked files by edges of ``kind`` (what ``SqliteGraphView`` reads one file at a time)."""
    out: dict[str, set[str]] = {}
    for src, dst in conn.execute(_FILE_LINKS, (kind,)):
        out.setdefault(src, set()).add(dst)
    return out


def engine_fingerprint() -> str:
    """A hash of the engine sources an index graph depends on."""
    digest = hashlib.sha256()
    for name in ENGINE_SOURCES:
        root = PROJECT_ROOT / name
        for path in sorted(root.rglob("*.py")) if root.is_dir() else [root]:
            digest.update(path.relative_to(PROJECT_ROOT).as_posix().encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


# --------------------------------------------------------------------------- #
# (a) agent traces and (c) prefetch
# --------------------------------------------------------------------------- #
def _as_graph(parts: tuple) -> StaticGraph:
    files, imports, tests, hits = parts
    return StaticGraph(files, imports, tests, search=lambda q, k: hits[:k])


def test_runs_before(trace: dict) -> list[list[str]] | None:
    """For each access of ``files_repo``, the test files the harness ran (``auto_test_run``) since the access before.

    ``files_repo`` is the trace's other actions with a path, restricted to files of the base commit, consecutive
    repeats collapsed; walk ``actions`` in that way. None when the actions do not give back ``files_repo``
    (or a path of it comes where it cannot), so that task's test runs are not fed.
    """
    files = trace["files_repo"]
    in_repo = set(files)
    runs: list[list[str]] = [[] for _ in files]
    pending: list[str] = []
    j = 0
    for action, path in trace.get("actions", ()):
        if not path:
            continue
        if action == "auto_test_run":
            pending.append(path)
        elif j < len(files) and path == files[j]:
            runs[j], pending = pending, []
            j += 1
        elif path in in_repo and not (j > 0 and path == files[j - 1]):
            return None  # a repository file where files_repo has another one
    return runs if j == len(files) else None


def run_traces(bench: Path, prefetch_ks=PREFETCH_KS, signals=SIGNALS, graph_cache: Path | None = None,
               graphs_from: str = "index", work: Path = DEFAULT_WORK, corpora: Path = DEFAULT_CORPORA,
               vectors: bool = False) -> dict:
    """Replay every trace with a per-repository model; score the model, the baselines and prefetching."""
    with open(require_file(bench / "swebench/lite_dev.jsonl")) as lines:
        tasks = {task["instance_id"]: task for task in map(json.loads, lines)}
    with open(require_file(bench / "trajectories/moatless_lite_dev.jsonl")) as lines:
        traces = [json.loads(line) for line in lines]
    traces.sort(key=lambda t: (t["repo"], tasks[t["instance_id"]]["created_at"], t["instance_id"]))
    model, base = Metrics(), {b: Metrics() for b in BASELINES}
    prefetch = {k: {"strict": 0, "cache": 0, "served": 0, "requests": 0} for k in prefetch_ks}
    by_repo: dict[str, tuple[Predictor, Baselines, TreeGraphs | IndexGraphs]] = {}
    started = time.perf_counter()
    graph_s = 0.0
    prefetchers = {k: Prefetcher(lambda path, task: path) for k in prefetch_ks}
    cached = pickle.loads(graph_cache.read_bytes()) if graph_cache and graph_cache.exists() else {}
    version = (engine_fingerprint() + ("+vectors" if vectors else "")) if graphs_from == "index" else "ast"
    computed = {}
    runs_fed = {"tasks_aligned": 0, "tasks_not_aligned": 0, "runs_fed": 0}
    for trace in traces:
        repo, task = trace["repo"], tasks[trace["instance_id"]]
        if repo not in by_repo:
            git_dir = mirror_dir(repo)
            if git_dir is None:
                raise SystemExit(f"no git mirror of {repo}: run `python benchmarks/corpora.py swebench` first")
            graphs = IndexGraphs(repo, work, corpora, vectors) if graphs_from == "index" else TreeGraphs(git_dir)
            by_repo[repo] = (Predictor(signals=signals), Baselines(), graphs)
        predictor, baselines, graphs = by_repo[repo]
        t0 = time.perf_counter()
        tid = trace["instance_id"]
        key = (graphs_from, version, tid)
        if key not in cached:
            computed[key] = graphs.graph(task["base_commit"], task["problem_statement"])
        predictor.graph = _as_graph(cached.get(key) or computed[key])
        graph_s += time.perf_counter() - t0
        predictor.set_query(tid, task["problem_statement"])
        files = trace["files_repo"]
        runs = test_runs_before(trace)
        runs_fed["tasks_aligned" if runs is not None else "tasks_not_aligned"] += 1
        runs = runs or [[] for _ in files]
        ranking: list[str] = []

        def feed_runs(tests: list[str]) -> None:
            for test in tests:
                predictor.observe_test_run(test, task_id=tid)
            runs_fed["runs_fed"] += len(tests)

        def rank_and_prefetch(top_k: int) -> list[str]:
            ranked = [p.path for p in predictor.predict(task_id=tid, top_k=top_k)]
            for k, pf in prefetchers.items():
                pf.submit(ranked[:k], task_id=tid)  # entries serve their task only (a new checkout)
                pf.wait_idle()
            return ranked

        feed_runs(runs[0] if files else [])
        rank_and_prefetch(max(prefetch_ks))  # the server prefetches on task_started, before the agent opens a file
        top_k = max(KS + tuple(prefetch_ks))
        for i, path in enumerate(files):
            if i > 0 and runs[i]:  # test_result events since the last access: the server re-ranks and re-prefetches
                feed_runs(runs[i])
                ranking = rank_and_prefetch(top_k)
            if i > 0:
                model.add(ranking[:max(KS)], {path})
                for name, ranked in baselines.rankings(files[i - 1], files[:i], {files[i - 1]}).items():
                    base[name].add(ranked, {path})
                built_before = path in files[:i]  # its context was built (and cached) for the earlier request
                for k, pf in prefetchers.items():
                    prefetch[k]["requests"] += 1
                    prefetch[k]["strict"] += path in ranking[:k]
                    prefetched = pf.record_request(path, tid) is not None
                    prefetch[k]["cache"] += prefetched
                    prefetch[k]["served"] += prefetched or built_before
            predictor.observe(path, task_id=tid)
            baselines.observe(path)
            ranking = rank_and_prefetch(top_k)
        baselines.end_set(files)
    accesses = sum(len(t["files_repo"]) for t in traces)
    for pf in prefetchers.values():
        pf.close()
    for _, _, graphs in by_repo.values():
        if isinstance(graphs, IndexGraphs):
            graphs.close()
    if graph_cache and computed:
        graph_cache.write_bytes(pickle.dumps({**cached, **computed}, protocol=pickle.HIGHEST_PROTOCOL))
    return {
        "tasks": len(traces),
        "model": model.summary(),
        "baselines": {b: m.summary() for b, m in base.items()},
        "prefetch": {f"k={k}": {"next_in_top_k": round(v["strict"] / v["requests"], 4),
                                "served_from_prefetch_cache": round(v["cache"] / v["requests"], 4),
                                "served_from_cache": round(v["served"] / v["requests"], 4),
                                "requests": v["requests"],
                                "builds_per_access": round(prefetchers[k].counts["built"] / max(1, accesses), 2),
                                "dropped": prefetchers[k].counts["dropped"]} for k, v in prefetch.items()},
        "test_runs": runs_fed,
        "weights": {r: p.stats()["weights"] for r, (p, _, _) in by_repo.items()},
        "ranking": {r: p.stats()["ranking"] for r, (p, _, _) in by_repo.items()},
        "seconds": round(time.perf_counter() - started, 1),
        "graph_seconds": round(graph_s, 1),
    }


# --------------------------------------------------------------------------- #
# (b) git history
# --------------------------------------------------------------------------- #
def _reveal_order(files: list[str], seed: int, sha: str) -> list[str]:
    order = sorted(files)
    random.Random(f"{seed}:{sha}").shuffle(order)
    return order


def _removed(commit: dict) -> list[str]:
    """Files a commit deleted or renamed away."""
    return list(commit["deleted"]) + [old for old, _ in commit["renames"]]


def _learn(predictor: Predictor, baselines: Baselines, commit: dict, order: list[str]) -> None:
    for path in order:
        predictor.observe(path, task_id=commit["sha"])
        baselines.observe(path)
    baselines.end_set(order)
    predictor.forget(_removed(commit))
    baselines.forget(_removed(commit))


def run_git(path: Path, seed: int, signals=SIGNALS) -> dict:
    """Within-commit and next-commit protocols on one commit stream."""
    commits = [json.loads(line) for line in open(path)]
    commits = [c for c in commits if c["files"] and len(c["files"]) <= MAX_SET]
    split = int(len(commits) * TRAIN_SHARE)
    out = {"commits": len(commits), "test_commits": len(commits) - split}
    for protocol in ("within_commit", "next_commit"):
        predictor, baselines = Predictor(signals=signals), Baselines()
        model, base = Metrics(), {b: Metrics() for b in BASELINES}
        for c in commits[:split]:
            _learn(predictor, baselines, c, _reveal_order(c["files"], seed, c["sha"]))
        prev_files: list[str] = []
        for c in commits[split:]:
            order = _reveal_order(c["files"], seed, c["sha"])
            if protocol == "next_commit" and prev_files:
                targets = set(order)
                model.add([p.path for p in predictor.predict(task_id=c["sha"], top_k=10)], targets)
                for name, ranked in baselines.rankings(baselines.prev, prev_files, set()).items():
                    base[name].add(ranked, targets)
            for i, path in enumerate(order):
                if protocol == "within_commit" and i > 0:
                    revealed, targets = set(order[:i]), set(order[i:])
                    ranked = predictor.predict(task_id=c["sha"], top_k=10, exclude=revealed)
                    model.add([p.path for p in ranked], targets)
                    for name, r in baselines.rankings(order[i - 1], order[:i], revealed).items():
                        base[name].add(r, targets)
                predictor.observe(path, task_id=c["sha"])
                baselines.observe(path)
            baselines.end_set(order)
            predictor.forget(_removed(c))
            baselines.forget(_removed(c))
            prev_files = [p for p in order if p not in set(_removed(c))]
        out[protocol] = {"model": model.summary(), "baselines": {b: m.summary() for b, m in base.items()},
                         "weights": predictor.stats()["weights"], "ranking": predictor.stats()["ranking"]}
    return out


# --------------------------------------------------------------------------- #
# report
# --------------------------------------------------------------------------- #
def _table(title: str, model: dict, baselines: dict) -> list[str]:
    lines = [title, f"  {'':24}{'hit@1':>8}{'hit@5':>8}{'hit@10':>8}{'MRR':>8}{'n':>7}"]
    for name, m in [("model (blend)", model)] + list(baselines.items()):
        lines.append(f"  {name:24}" + "".join(f"{m[k]:>8.3f}" for k in ("hit@1", "hit@5", "hit@10", "mrr"))
                     + f"{m['n']:>7}")
    return lines


def main(argv: list[str] | None = None) -> int:
    """Run the benchmarks and print a table (or one JSON object with --json)."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bench", type=Path, default=DEFAULT_BENCH, help="benchmark data folder")
    ap.add_argument("--seed", type=int, default=0, help="seed of the within-commit reveal order")
    ap.add_argument("--skip-traces", action="store_true")
    ap.add_argument("--skip-git", action="store_true")
    ap.add_argument("--signals", default=",".join(SIGNALS), help="comma-separated model signals (ablation)")
    ap.add_argument("--graphs", choices=GRAPH_SOURCES, default="index",
                    help="structure and search from codeahead's own index of each base commit (what the server "
                         "reads), or from the light ast + BM25 graph of the git mirror (quicker to build)")
    ap.add_argument("--work", type=Path, default=DEFAULT_WORK, help="working folders of --graphs index")
    ap.add_argument("--corpora", type=Path, default=DEFAULT_CORPORA, help="corpora folder (mirrors.json, trees/)")
    ap.add_argument("--graph-cache", type=Path, help="pickle of the per-task graphs, reused when present")
    ap.add_argument("--vectors", action="store_true",
                    help="--graphs index: embed each commit's index and fuse vectors into the search (slower)")
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    args = ap.parse_args(argv)
    if args.vectors and args.graphs != "index":
        raise SystemExit("--vectors needs --graphs index (the light graphs have no vectors)")
    histories = sorted((args.bench / "nextfile").glob("*_commits.jsonl"))
    if not args.skip_git and not histories:
        raise SystemExit(f"no {args.bench / 'nextfile'}/*_commits.jsonl: pass --bench, or --skip-git")
    signals = tuple(s for s in args.signals.split(",") if s)
    result: dict = {"seed": args.seed, "signals": signals, "graphs": args.graphs, "vectors": args.vectors}
    if not args.skip_traces:
        result["traces"] = run_traces(args.bench, signals=signals, graph_cache=args.graph_cache,
                                      graphs_from=args.graphs, work=args.work, corpora=args.corpora,
                                      vectors=args.vectors)
    if not args.skip_git:
        result["git"] = {p.stem.removesuffix("_commits"): run_git(p, args.seed, signals)
                         for p in histories}
    if args.json:
        print(json.dumps(result, indent=1))
        return 0
    lines = []
    if "traces" in result:
        t = result["traces"]
        lines += _table(f"(a) agent traces: {t['tasks']} Moatless tasks, {t['seconds']} s "
                        f"({t['graph_seconds']} s building light graphs)", t["model"], t["baselines"])
        for k, v in t["prefetch"].items():
            lines.append(f"(c) prefetch {k}: next access in the top-k just prefetched {v['next_in_top_k']:.3f}, "
                         f"served from the prefetch cache (<=64 entries, this task; strict) "
                         f"{v['served_from_prefetch_cache']:.3f}, from the prefetch cache or built for an earlier "
                         f"request of the task {v['served_from_cache']:.3f}, of {v['requests']} requests")
    for repo, r in result.get("git", {}).items():
        for protocol in ("within_commit", "next_commit"):
            lines += _table(f"(b) git {repo} {protocol} ({r['test_commits']} test commits of {r['commits']})",
                            r[protocol]["model"], r[protocol]["baselines"])
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
