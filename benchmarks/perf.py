"""Live-workspace speed in one run: cold index, reopen, get_context, save-to-visible, peak RSS; optionally vs Aider.

Each phase runs in a process of its own (see ``index_speed.run_phase``). With ``--vs-aider`` the same
files go through Aider's ``RepoMap`` at 1,024 / 2,048 / 4,096 tokens, from a venv the script makes in
``benchmarks/.venvs/aider`` and with no network (Linux network namespace when available).

    /work/venv/bin/python benchmarks/perf.py [--corpus DIR] [--queries FILE] [--vs-aider] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import index_speed as bench  # noqa: E402  (benchmarks/ is not a package)
from corpora import require_file  # noqa: E402

PROFILE = "ollama-4k"
MIN_QUERIES = 100
#: Unrelated queries that load the process's caches before the measured ones.
WARMUP_QUERIES = ("where are file changes detected", "database connection pool", "url routing and views")
SAVE_REPEATS = 30
#: Seconds between polls of ``search`` for a saved function; tighter polling steals the GIL from the index pass.
POLL_S = 0.01
VISIBLE_TIMEOUT_S = 20.0
#: Quiet time between two saves, so each save starts with an idle watcher.
SETTLE_S = 0.3
WATCH_START_S = 0.5
TARGETS = {**bench.TARGETS, "context_p50_s": 0.030, "context_p99_s": 0.150, "save_visible_p95_s": 0.200}
PERCENTILES = (50, 90, 95, 99)

AIDER_VENV = bench.PROJECT_ROOT / "benchmarks" / ".venvs" / "aider"
AIDER_PACKAGE = "aider-chat"
AIDER_TOKENS = (1024, 2048, 4096)
#: An OpenAI name whose tokenizer (cl100k) ships inside litellm: counting tokens needs no download.
AIDER_MODEL = "gpt-4"
AIDER_CACHE_DIR_GLOB = ".aider.tags.cache.v*"
PLOT_PATH = bench.PROJECT_ROOT / "benchmarks" / "perf.png"

# Runs inside Aider's venv. stdin is a JSON object of parameters; prints one JSON line.
AIDER_DRIVER = r'''
import json, os, re, sys, time
t0 = time.perf_counter()
from aider.io import InputOutput
from aider.models import Model
from aider.repomap import RepoMap
p = json.loads(sys.stdin.read())
io = InputOutput(pretty=False, yes=True, fancy_input=False)
rm = RepoMap(map_tokens=p["map_tokens"], root=p["root"], main_model=Model(p["model"]), io=io)
files = [os.path.join(p["root"], f) for f in json.load(open(p["files"]))]
out = {"startup_s": time.perf_counter() - t0}
t = time.perf_counter()
text = rm.get_repo_map([], files) or ""
out["first_map_s"] = time.perf_counter() - t
out["map_tokens_out"] = rm.token_count(text)
if p.get("touch"):
    path = os.path.join(p["root"], p["touch"])
    original, st = open(path, "rb").read(), os.stat(path)
    try:
        with open(path, "ab") as fh:
            fh.write(b"\n\ndef aider_bench_probe():\n    return 1\n")
        t = time.perf_counter()
        rm.get_repo_map([], files, force_refresh=True)
        out["after_edit_s"] = time.perf_counter() - t
    finally:
        open(path, "wb").write(original)
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
lat = []
for q in p.get("queries", []):
    idents = {w for w in re.split(r"\W+", q) if w}
    t = time.perf_counter()
    rm.get_repo_map([], files, mentioned_idents=idents)
    lat.append(time.perf_counter() - t)
out["query_s"] = lat
for line in open("/proc/self/status"):
    if line.startswith("VmHWM:"):
        out["main_peak_rss_mb"] = int(line.split()[1]) / 1024
print(json.dumps(out))
'''


# --------------------------------------------------------------------------- #
# Queries
# --------------------------------------------------------------------------- #

def load_queries(path: Path) -> list[str]:
    """Distinct problem statements from a SWE-bench style JSONL file, in file order."""
    seen: dict[str, None] = {}
    for line in require_file(path, "--queries").read_text().splitlines():
        if line.strip():
            text = json.loads(line).get("problem_statement", "").strip()
            if text:
                seen.setdefault(text, None)
    return list(seen)


def spread(values: list[float]) -> dict:
    """p50/p90/p95/p99, mean and max of a list of seconds."""
    out = {f"p{q}_s": bench.percentile(values, q) for q in PERCENTILES}
    out.update({"mean_s": statistics.fmean(values), "max_s": max(values), "n": len(values)})
    return out


# --------------------------------------------------------------------------- #
# codeahead phases (each in its own process)
# --------------------------------------------------------------------------- #

def phase_context(p: dict) -> dict:
    """Warm get_context latency over many distinct queries at one model profile."""
    started = time.perf_counter()
    from indexer.workspace import Workspace

    ws = Workspace(p["corpus"], index_dir=p["index_dir"])
    ws.index()
    ws.context(WARMUP_QUERIES[0], profile=p["profile"])
    first_answer = time.perf_counter() - started  # imports + open + reconcile + one context
    ws.warm(wait=True)  # what a server does once its index is ready
    for q in WARMUP_QUERIES[1:]:
        ws.context(q, profile=p["profile"])
    latencies, tokens, empty = [], [], 0
    for q in p["queries"]:
        t = time.perf_counter()
        packed = ws.context(q, profile=p["profile"])
        latencies.append(time.perf_counter() - t)
        tokens.append(packed.tokens)
        empty += not packed.items
        if packed.tokens > packed.budget:
            raise SystemExit(f"context over budget: {packed.tokens} > {packed.budget} tokens for query {q[:60]!r}")
    ws.close()
    return {**spread(latencies), "latencies_s": latencies, "median_tokens": statistics.median(tokens),
            "empty_answers": empty, "first_answer_s": first_answer}


def phase_save_visible(p: dict) -> dict:
    """Save a new function while the watcher runs; time until ``search`` returns it."""
    from indexer.workspace import Workspace

    corpus, rel = Path(p["corpus"]), p["touch"]
    ws = Workspace(corpus, index_dir=p["index_dir"])
    ws.index()
    ws.warm(wait=True)  # as the server does after its first index: no load competes with the saves
    tag = f"{os.getpid()}_{int(time.time())}"
    latencies, passes = [], []
    with bench.RestoredFile(corpus / rel) as f:
        ws.start_watching(on_applied=lambda batch, stats: passes.append(stats.seconds))
        time.sleep(WATCH_START_S)
        text = f.original
        for i in range(p["repeats"]):
            name = f"codeahead_probe_{tag}_{i}"
            text += f"\n\ndef {name}():\n    return {i}\n".encode()
            t = time.perf_counter()
            f.write(text)
            while not any(h.node.name == name for h in ws.search(name, top_k=5)):
                if time.perf_counter() - t > VISIBLE_TIMEOUT_S:
                    raise SystemExit(f"{name} not searchable {VISIBLE_TIMEOUT_S:.0f} s after saving {rel}: "
                                     "is the watcher running?")
                time.sleep(POLL_S)
            latencies.append(time.perf_counter() - t)
            time.sleep(SETTLE_S)
        ws.stop_watching()
    ws.index(paths=[rel])  # the index matches the restored file again
    ws.close()
    return {**spread(latencies), "latencies_s": latencies, "passes": len(passes),
            "median_pass_s": statistics.median(passes) if passes else None}


PHASES = {**bench.PHASES, "context": phase_context, "save_visible": phase_save_visible}


# --------------------------------------------------------------------------- #
# Aider
# --------------------------------------------------------------------------- #

def aider_python() -> Path:
    """Aider's interpreter, installing aider-chat into its own ignored venv the first time."""
    python = AIDER_VENV / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(AIDER_VENV)], check=True)
    probe = subprocess.run([str(python), "-c", "import aider.repomap"], capture_output=True)
    if probe.returncode != 0:
        print(f"installing {AIDER_PACKAGE} into {AIDER_VENV} ...", file=sys.stderr)
        subprocess.run([str(python), "-m", "pip", "install", "-q", AIDER_PACKAGE], check=True)
    return python


def _offline_prefix() -> list[str]:
    """``unshare -n`` (no network at all) when this user may create a network namespace."""
    try:
        ok = subprocess.run(["unshare", "-n", "true"], capture_output=True).returncode == 0
    except FileNotFoundError:
        ok = False
    return ["unshare", "-n"] if ok else []


def _aider_home(tmp: Path) -> Path:
    """A private HOME whose fresh (empty) model-info cache stops Aider from fetching prices online."""
    home = tmp / "aider-home"
    cache = home / ".aider" / "caches"
    cache.mkdir(parents=True, exist_ok=True)
    (cache / "model_prices_and_context_window.json").write_text("{}")
    return home


def run_aider(python: Path, params: dict, home: Path, offline: list[str]) -> dict:
    return bench.measured_answer(bench.run_measured([*offline, str(python), "-c", AIDER_DRIVER],
                                                    stdin=json.dumps(params),
                                                    env={"HOME": str(home), "AIDER_ANALYTICS": "false"}))


def aider_runs(corpus: Path, files: list[str], touch: str, queries: list[str], tmp: Path) -> dict:
    """Cold, warm new process, and rebuild after one edit, at each map size; on a copy of the corpus."""
    python = aider_python()
    root = tmp / "aider-corpus"
    shutil.copytree(corpus, root, symlinks=True, ignore=shutil.ignore_patterns(AIDER_CACHE_DIR_GLOB))
    files_json = tmp / "aider-files.json"
    files_json.write_text(json.dumps(files))
    home, offline = _aider_home(tmp), _offline_prefix()
    out = {"model": AIDER_MODEL, "offline": bool(offline), "sizes": {}}
    for tokens in AIDER_TOKENS:
        params = {"root": str(root), "files": str(files_json), "map_tokens": tokens, "model": AIDER_MODEL}
        for cache in root.glob(AIDER_CACHE_DIR_GLOB):
            shutil.rmtree(cache)
        cold = run_aider(python, params, home, offline)
        warm = run_aider(python, params, home, offline)
        edit = run_aider(python, {**params, "touch": touch, "queries": queries}, home, offline)
        out["sizes"][tokens] = {"cold": cold, "warm": warm, "edit": edit}
    return out


# --------------------------------------------------------------------------- #
# Report
# --------------------------------------------------------------------------- #

def indexed_files(index_dir: str) -> list[str]:
    """The files codeahead indexed, so Aider maps exactly the same corpus."""
    from indexer.config import DB_NAME

    conn = sqlite3.connect(Path(index_dir) / DB_NAME)
    try:
        return [r[0] for r in conn.execute("SELECT path FROM files ORDER BY path")]
    finally:
        conn.close()


def codeahead_rows(r: dict) -> list[tuple]:
    cold, reopen, ctx, save = r["cold"], r["reopen"], r["context"], r["save_visible"]
    peak_main = max(x["main_peak_rss_mb"] for x in (*cold, *reopen, ctx, save))
    peak_tree = max(x["tree_peak_rss_mb"] for x in (*cold, *reopen, ctx, save))
    return [
        ("cold index (open + index)", bench.median_of(cold, "total_s"), "s", TARGETS["cold_s"]),
        ("cold index, CPU seconds of the process tree (load-proof)", bench.median_of(cold, "tree_cpu_s"), "s", None),
        ("reopen (open + reconcile, nothing changed)", bench.median_of(reopen, "total_s"), "s", TARGETS["reopen_s"]),
        (f"get_context {PROFILE} p50 ({ctx['n']} queries, warm)", ctx["p50_s"], "s", TARGETS["context_p50_s"]),
        (f"get_context {PROFILE} p99", ctx["p99_s"], "s", TARGETS["context_p99_s"]),
        (f"save-to-visible p50 ({save['n']} saves)", save["p50_s"], "s", None),
        ("save-to-visible p95", save["p95_s"], "s", TARGETS["save_visible_p95_s"]),
        ("peak RSS, largest phase, main process", peak_main, "MB", TARGETS["peak_rss_mb"]),
        ("peak RSS, largest phase, process tree (workers summed)", peak_tree, "MB", None),
    ]


def aider_table(r: dict) -> tuple[str, dict]:
    """Aider's figures per map size and the codeahead/aider ratios (lower is better for codeahead)."""
    cold_ca = bench.median_of(r["cold"], "total_s")
    cold_ca_wall = bench.median_of(r["cold"], "process_wall_s")
    cold_ca_cpu = bench.median_of(r["cold"], "tree_cpu_s")
    first_ca = r["context"]["first_answer_s"]
    save_ca = r["save_visible"]["p50_s"]
    ctx_ca = r["context"]["p50_s"]
    peak_ca = max(x["tree_peak_rss_mb"] for x in (*r["cold"], *r["reopen"], r["context"], r["save_visible"]))
    lines = ["aider: cold = process wall, fresh tags cache; warm new proc = imports + first map, cache present; "
             "after edit = forced rebuild (force_refresh) after appending a function to the edited file",
             f"{'aider map tokens':<18}{'cold':>9}{'warm new proc':>15}{'after edit':>12}{'query p50':>11}"
             f"{'peak RSS':>10}{'cold CPU':>10}   ratios codeahead/aider: cold, cold CPU, new proc, edit, query, RSS"]
    ratios = {}
    for tokens, s in r["aider"]["sizes"].items():
        cold = s["cold"]["process_wall_s"]
        warm = s["warm"]["startup_s"] + s["warm"]["first_map_s"]
        edit = s["edit"]["after_edit_s"]
        query = bench.percentile(s["edit"]["query_s"], 50) if s["edit"]["query_s"] else float("nan")
        peak = max(x["tree_peak_rss_mb"] for x in s.values())
        cold_cpu = s["cold"]["tree_cpu_s"]
        ratio = {"cold": cold_ca_wall / cold, "cold_cpu": cold_ca_cpu / cold_cpu, "warm_new_process": first_ca / warm,
                 "edit": save_ca / edit, "query": ctx_ca / query, "peak_rss": peak_ca / peak}
        ratios[tokens] = ratio
        lines.append(f"{tokens:<18}{cold:>8.1f}s{warm:>14.1f}s{edit:>11.2f}s{query:>10.2f}s{peak:>8.0f}MB"
                     f"{cold_cpu:>9.1f}s   " + ", ".join(f"{v:.3f}" for v in ratio.values()))
    lines.append(f"codeahead: cold {cold_ca_wall:.1f}s wall (library {cold_ca:.1f}s, {cold_ca_cpu:.1f} CPU-s), "
                 f"new process to first context {first_ca:.2f}s, save-to-visible p50 {save_ca * 1000:.0f} ms, "
                 f"get_context p50 {ctx_ca * 1000:.0f} ms, peak RSS {peak_ca:.0f} MB (process trees)")
    return "\n".join(lines), ratios


def plot(r: dict, path: Path) -> str:
    """Latency percentiles, codeahead vs Aider, on a log scale; returns a line saying what was written."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "no plot: matplotlib is missing (benchmark-only: /work/venv/bin/pip install matplotlib)"
    series = {f"codeahead get_context ({PROFILE})": r["context"]["latencies_s"],
              "codeahead save-to-visible": r["save_visible"]["latencies_s"]}
    for tokens, s in r.get("aider", {}).get("sizes", {}).items():
        if s["edit"]["query_s"]:
            series[f"aider repo map {tokens} tok, per query"] = s["edit"]["query_s"]
    fig, ax = plt.subplots(figsize=(9, 5))
    for label, values in series.items():
        ax.plot([str(q) for q in (*PERCENTILES, 100)],
                [bench.percentile(values, q) * 1000 for q in (*PERCENTILES, 100)], marker="o",
                label=f"{label} (n={len(values)})")
    ax.set_yscale("log")
    ax.set_xlabel("percentile (100 = max)")
    ax.set_ylabel("latency, ms (log scale)")
    ax.set_title(f"{Path(r['corpus']).name}: codeahead vs Aider RepoMap latency")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return f"plot written to {path}"


def main(argv: list[str] | None = None) -> int:
    if len(sys.argv) > 1 and sys.argv[1] == bench.PHASE_ARG:
        bench.phase_main(PHASES)
        return 0
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--corpus", type=Path, default=bench.DEFAULT_CORPUS, help="folder to index (default: Django 5.2)")
    ap.add_argument("--queries", type=Path, default=bench.DEFAULT_QUERIES, help="JSONL with problem_statement fields")
    ap.add_argument("--touch", default=None, help="file to edit, in the corpus (default: largest non-test .py)")
    ap.add_argument("--repeat-cold", type=int, default=3, help="cold index runs (median reported)")
    ap.add_argument("--repeat", type=int, default=3, help="reopen runs")
    ap.add_argument("--saves", type=int, default=SAVE_REPEATS, help="save-to-visible repetitions")
    ap.add_argument("--vs-aider", action="store_true", help="also run Aider's RepoMap on the same files")
    ap.add_argument("--aider-queries", type=int, default=15, help="queries timed through Aider per map size")
    ap.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    args = ap.parse_args(argv)
    corpus = args.corpus.resolve()
    if not corpus.is_dir():
        raise SystemExit(f"corpus {corpus} is not a folder: run benchmarks/corpora.py django or pass --corpus DIR")
    queries = load_queries(args.queries)
    if len(queries) < MIN_QUERIES:
        raise SystemExit(f"{args.queries} has {len(queries)} distinct problem statements, need {MIN_QUERIES}: "
                         "pass another --queries file")
    rel = args.touch or bench.default_touch_file(corpus)
    info = bench.machine()
    started = time.perf_counter()
    script = Path(__file__).resolve()
    r: dict = {"benchmark": "perf", "machine": info, "corpus": str(corpus), "touch": rel, "profile": PROFILE}
    with tempfile.TemporaryDirectory(prefix="codeahead-perf-") as tmp:
        work = bench.private_copy(corpus, Path(tmp))  # save_visible edits a file: never in the shared corpus
        index_dir = str(Path(tmp) / "index")
        params = {"corpus": str(work), "index_dir": index_dir, "touch": rel, "repeats": args.saves,
                  "profile": PROFILE}
        r["cold"] = [bench.run_phase(script, "cold", params) for _ in range(args.repeat_cold)]
        r["reopen"] = [bench.run_phase(script, "reopen", params) for _ in range(args.repeat)]
        r["context"] = bench.run_phase(script, "context", {**params, "queries": queries})
        r["save_visible"] = bench.run_phase(script, "save_visible", params)
        if args.vs_aider:
            r["aider"] = aider_runs(corpus, indexed_files(index_dir), rel, queries[:args.aider_queries], Path(tmp))
    rows = codeahead_rows(r)
    r["summary"] = {label: value for label, value, _unit, _target in rows}
    aider_text = ""
    if args.vs_aider:
        aider_text, r["ratios"] = aider_table(r)
    r["plot"] = plot(r, PLOT_PATH)
    r["loadavg_end"] = list(os.getloadavg())
    r["run_s"] = time.perf_counter() - started
    saved = bench.save_results("perf", r)
    if args.json:
        print(json.dumps(r))
        return 0
    print(bench.machine_line(info))
    print(f"corpus: {corpus} ({r['cold'][0]['files_seen']} files); edited file: {rel}; cold runs: {args.repeat_cold}")
    print(bench.format_rows(rows))
    if aider_text:
        print(aider_text)
    print(r["plot"])
    print(f"load average at end {', '.join(f'{x:.2f}' for x in r['loadavg_end'])}; run took {r['run_s']:.0f} s; "
          f"saved {saved}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
