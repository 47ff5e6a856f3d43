"""Warm ``get_context`` wall time through the MCP stdio transport vs the library, same index, same run.

    python benchmarks/mcp_latency.py [--corpus DIR] [--index-dir DIR] [--queries FILE] [-n 50] [--json]

The library baseline runs before and after the stdio run, so machine noise shows as the spread
between the two library figures rather than as a transport cost.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import anyio
from mcp.client import Client
from mcp.client.stdio import StdioServerParameters

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from corpora import require_file  # noqa: E402  (benchmarks/ is on sys.path when run as a script)
from indexer.workspace import Workspace  # noqa: E402

PROFILE = "ollama-4k"


def _queries(path: Path, n: int) -> list[str]:
    rows = [json.loads(line) for line in require_file(path, "--queries").read_text().splitlines() if line.strip()]
    return [r["problem_statement"] for r in rows[:n]]


def _summary(times: list[float]) -> dict:
    ordered = sorted(times)
    return {"n": len(ordered), "p50_ms": round(statistics.median(ordered) * 1000, 1),
            "p90_ms": round(ordered[int(len(ordered) * 0.9) - 1] * 1000, 1),
            "mean_ms": round(statistics.mean(ordered) * 1000, 1)}


def library(corpus: Path, index_dir: Path, queries: list[str]) -> list[float]:
    with Workspace(corpus, index_dir=index_dir) as ws:
        ws.index()
        ws.context(queries[0], profile=PROFILE)  # warm caches
        times = []
        for q in queries:
            start = time.perf_counter()
            ws.context(q, profile=PROFILE)
            times.append(time.perf_counter() - start)
    return times


async def over_stdio(corpus: Path, index_dir: Path, queries: list[str]) -> list[float]:
    params = StdioServerParameters(command=sys.executable, cwd=str(ROOT), args=[
        "-m", "server.cli", "serve", "--workspace", str(corpus), "--index-dir", str(index_dir), "--no-watch"])
    async with Client(params) as client:
        await client.call_tool("index_status", {})
        await client.call_tool("get_context", {"query": queries[0], "profile": PROFILE})
        times = []
        for q in queries:
            start = time.perf_counter()
            result = await client.call_tool("get_context", {"query": q, "profile": PROFILE})
            times.append(time.perf_counter() - start)
            if result.is_error:
                raise RuntimeError(result.content[0].text)
    return times


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, default=ROOT / "benchmarks/.corpora/django-5.2")
    parser.add_argument("--index-dir", type=Path, default=ROOT / "benchmarks/.results/mcp-latency-index")
    parser.add_argument("--queries", type=Path, default=ROOT.parent / "shared/bench/swebench/lite_dev.jsonl")
    parser.add_argument("-n", type=int, default=50, help="distinct queries")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if not args.corpus.is_dir():
        sys.exit(f"corpus {args.corpus} not found: run `python benchmarks/corpora.py django` first")
    queries = _queries(args.queries, args.n)
    with Workspace(args.corpus, index_dir=args.index_dir) as ws:
        ws.index()
    before = library(args.corpus, args.index_dir, queries)
    stdio = anyio.run(over_stdio, args.corpus, args.index_dir, queries)
    after = library(args.corpus, args.index_dir, queries)
    result = {"benchmark": "mcp_latency", "corpus": str(args.corpus), "profile": PROFILE,
              "library_before": _summary(before), "stdio": _summary(stdio), "library_after": _summary(after)}
    result["stdio_over_library_p50"] = round(
        result["stdio"]["p50_ms"] / statistics.median([result["library_before"]["p50_ms"],
                                                       result["library_after"]["p50_ms"]]), 2)
    if args.json:
        print(json.dumps(result))
    else:
        for key in ("library_before", "stdio", "library_after"):
            s = result[key]
            print(f"{key:<15} n={s['n']} p50 {s['p50_ms']} ms  p90 {s['p90_ms']} ms  mean {s['mean_ms']} ms")
        print(f"stdio / library p50: {result['stdio_over_library_p50']}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
