"""Code-search quality on semble's annotated Python repositories: NDCG@10 and recall within a token budget.

Follows semble's own metric (../shared/bench/README.md, section 1): a hit counts for a target when its
path matches and, for a span target, its lines overlap; each target counts once, at its first hit;
ideal DCG = min(10, targets present in the index); the figure is the mean over repositories of the
per-repository mean. Recall at B tokens walks the ranked hits adding the cl100k tokens of each hit's
code and stops at the first hit that no longer fits; a target is recalled if a hit for it came before.

    /work/venv/bin/python benchmarks/quality_semble.py [--repos flask,click] [--ablate] [--json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from _quality import (CONFIGS, alphas_arg, budgets_arg, emit, DEFAULT_BENCH, DEFAULT_CORPORA, TokenCosts, ablation_deltas, choose_configs, mean,
                      ndcg_at_k, needs_vectors, ranked_nodes, table, within_budget)

from corpora import mirror_dir, semble_dir, semble_repos
from indexer.types import Node
from indexer.workspace import Workspace

TOP_K = 10
BUDGETS = (500, 1000, 2000, 4000, 8000)
CATEGORIES = ("semantic", "architecture", "symbol")


@dataclass(frozen=True, slots=True)
class Target:
    """An annotated answer: a repo-root-relative file, optionally a line span in it."""

    path: str
    start_line: int | None = None
    end_line: int | None = None

    def matches(self, path: str, start: int, end: int) -> bool:
        if path != self.path:
            return False
        return self.start_line is None or not (end < self.start_line or start > self.end_line)


def parse_target(raw: str | dict) -> Target:
    if isinstance(raw, str):
        return Target(raw)
    return Target(raw["path"], raw.get("start_line"), raw.get("end_line"))


def repo_path(node: Node, prefix: str) -> str:
    """A node's path as the annotations spell it: relative to the repository root, not the indexed folder."""
    return f"{prefix}/{node.path}" if prefix else node.path


def first_rank(nodes: list[Node], target: Target, prefix: str) -> int | None:
    """1-based rank of the first hit covering `target`, or None."""
    for rank, node in enumerate(nodes, 1):
        if target.matches(repo_path(node, prefix), node.start_line, node.end_line):
            return rank
    return None


def indexed_targets(conn, targets: list[Target], prefix: str) -> list[Target]:
    """Targets some indexed node covers (semble's `count_indexed_targets`): the others cannot be found."""
    out = []
    for t in targets:
        rel = t.path[len(prefix) + 1:] if prefix and t.path.startswith(prefix + "/") else t.path
        sql = "SELECT 1 FROM nodes n JOIN files f ON f.id=n.file_id WHERE f.path=?"
        args: tuple = (rel,)
        if t.start_line is not None:
            sql += " AND n.start_line<=? AND n.end_line>=?"
            args += (t.end_line, t.start_line)
        if conn.execute(sql + " LIMIT 1", args).fetchone():
            out.append(t)
    return out


def score_query(nodes: list[Node], targets: list[Target], costs: TokenCosts, prefix: str) -> dict[str, float]:
    """NDCG@10 and recall at each budget for one query's ranked nodes."""
    top = nodes[:TOP_K]
    ranks = [r for t in targets if (r := first_rank(top, t, prefix)) is not None]
    out = {"ndcg10": ndcg_at_k(ranks, len(targets), TOP_K)}
    for budget in BUDGETS:
        fitted = within_budget(nodes, costs, budget)
        found = sum(first_rank(fitted, t, prefix) is not None for t in targets)
        out[f"recall@{budget}"] = found / len(targets) if targets else 0.0
    return out


def metric_names() -> list[str]:
    return ["ndcg10", *(f"ndcg10:{c}" for c in CATEGORIES), *(f"recall@{b}" for b in BUDGETS)]


def bench_repo(spec: dict, corpora: Path, bench: Path, configs: dict, embedder: str | None = None,
               history: bool = False) -> dict:
    """Index one repository's benchmark root and score every annotated query under each configuration.

    With ``history`` the git mirror's commits up to the pinned revision are mined for the ``history``
    signal (the corpus itself is an exported tree, without .git).
    """
    prefix = (spec.get("benchmark_root") or "").strip("/")
    root = semble_dir(spec["name"], corpora) / prefix
    if not root.is_dir():
        raise SystemExit(f"corpus {root} is missing: run `python benchmarks/corpora.py semble` first")
    queries = json.loads((bench / "semble" / "annotations" / f"{spec['name']}.json").read_text())
    with tempfile.TemporaryDirectory(prefix="quality-semble-") as index_dir:
        ws = Workspace(root, index_dir=index_dir, embedder=embedder)
        try:
            started = time.perf_counter()
            stats = ws.index()
            index_s = time.perf_counter() - started
            commits = mine_history(ws, spec, corpora, prefix) if history else None
            started = time.perf_counter()
            vectors = needs_vectors(configs) and ws.enable_vectors(wait=True)
            vector_s = time.perf_counter() - started
            if needs_vectors(configs) and not vectors:
                raise SystemExit("no embedder installed: install wordllama or run only --configs bm25,bm25+signals")
            costs = TokenCosts(ws)
            per_config: dict[str, dict[str, list[float]]] = {}
            latencies: dict[str, list[float]] = {}
            skipped = 0
            for q in queries:
                targets = indexed_targets(ws.reader(), [parse_target(t) for t in q["relevant"] + q["secondary"]],
                                          prefix)
                if not targets:
                    skipped += 1
                for name, options in configs.items():
                    started = time.perf_counter()
                    nodes = ranked_nodes(ws, q["query"], options)
                    latencies.setdefault(name, []).append(time.perf_counter() - started)
                    scores = score_query(nodes, targets, costs, prefix)
                    bucket = per_config.setdefault(name, {})
                    for metric, value in scores.items():
                        bucket.setdefault(metric, []).append(value)
                    bucket.setdefault(f"ndcg10:{q['category']}", []).append(scores["ndcg10"])
        finally:
            ws.close()
    return {
        "repo": spec["name"], "queries": len(queries), "queries_without_indexed_target": skipped,
        "files": stats.files_parsed, "nodes": sum(v for k, v in stats.nodes_by_kind.items() if k != "library"),
        "index_s": round(index_s, 3), "vectors_s": round(vector_s, 3), "history_commits": commits,
        "query_ms_p50": {n: round(1000 * statistics.median(v), 2) for n, v in latencies.items()},
        "metrics": {n: {m: mean(v) for m, v in bucket.items()} for n, bucket in per_config.items()},
    }


def mine_history(ws: Workspace, spec: dict, corpora: Path, prefix: str) -> int:
    """Give the exported benchmark root the history of its pinned revision, from the repository's mirror."""
    repo = "/".join(spec["url"].removesuffix(".git").split("/")[-2:])
    git_dir = mirror_dir(repo, corpora / "mirrors.json")
    if git_dir is None:
        raise SystemExit(f"--history: no git mirror of {repo}: run `python benchmarks/corpora.py swebench` first")
    commits = ws.mine_history(git_dir, spec["revision"], subdir=prefix or None)
    if commits is None:
        raise SystemExit(f"--history: {spec['revision']} is not in the mirror {git_dir}")
    return commits


def summarise(repos: list[dict], configs: dict) -> dict[str, dict[str, float]]:
    """Mean over repositories of each per-repository mean (categories: over the repositories that have it)."""
    return {name: {m: mean(r["metrics"][name][m] for r in repos if m in r["metrics"][name]) for m in metric_names()}
            for name in configs}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bench", type=Path, default=DEFAULT_BENCH, help="the shared benchmark data folder")
    parser.add_argument("--corpora", type=Path, default=DEFAULT_CORPORA, help="where corpora.py put the repositories")
    parser.add_argument("--repos", default="", help="comma-separated subset of repository names")
    parser.add_argument("--configs", default=",".join(CONFIGS), help="comma-separated configurations to compare")
    parser.add_argument("--ablate", nargs="?", const="full", default=None, metavar="CONFIG",
                        help="also run CONFIG (default: full) without each signal in turn")
    parser.add_argument("--alphas", type=alphas_arg, default=[],
                        help="also run each configuration with vectors at these fixed lexical shares, e.g. 0.6,0.9")
    parser.add_argument("--posting-budgets", type=budgets_arg, default=[],
                        help="also run each configuration with these query posting budgets (e.g. 0.2,0.5)")
    parser.add_argument("--embedder", default=None, help="wordllama (default when installed) or minilm, for the "
                        "configurations with vectors")
    parser.add_argument("--history", action="store_true", help="mine each repository's git mirror at the pinned "
                        "revision for the commit-history signal")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of tables")
    parser.add_argument("--out", type=Path, default=None, help="also write the JSON object to this file")
    args = parser.parse_args(argv)
    configs = choose_configs([c for c in args.configs.split(",") if c], args.ablate, args.posting_budgets, args.alphas)
    wanted = {r for r in args.repos.split(",") if r}
    specs = [s for s in semble_repos(args.bench) if not wanted or s["name"] in wanted]
    if not specs:
        raise SystemExit(f"no semble repository matches --repos {args.repos}")
    started = time.perf_counter()
    repos = []
    for spec in specs:
        repos.append(bench_repo(spec, args.corpora, args.bench, configs, args.embedder, args.history))
        if not args.json:
            print(f"{spec['name']}: indexed in {repos[-1]['index_s']:.2f}s", file=sys.stderr)
    summary = summarise(repos, configs)
    result = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "configs": list(configs),
              "summary": summary, "repos": repos, "seconds": round(time.perf_counter() - started, 1)}
    if emit(result, args.out, args.json):
        return 0
    metrics = metric_names()
    print(f"semble Python, {sum(r['queries'] for r in repos)} queries on {len(repos)} repos ({result['date']})")
    print(table(["config", *metrics], [[n, *(summary[n][m] for m in metrics)] for n in configs]))
    print()
    print(table(["NDCG@10 by repo", *configs], [[r["repo"], *(r["metrics"][n]["ndcg10"] for n in configs)]
                                                 for r in repos]))
    print()
    print(table(["repo", "nodes", "index_s", "vectors_s", *(f"p50ms {n}" for n in configs)],
                [[r["repo"], r["nodes"], r["index_s"], r["vectors_s"], *r["query_ms_p50"].values()] for r in repos]))
    if args.ablate:
        print()
        print(f"{args.ablate} minus one signal (negative: the signal helps)")
        print(table(["config", *metrics], ablation_deltas(summary, metrics, args.ablate)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
