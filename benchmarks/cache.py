"""Cache benchmark: (a) hit latency per tier and backend, (b) hit rates per tier replaying agent traces.

Usage: /work/venv/bin/python benchmarks/cache.py [--traces FILE] [--gets N] [--redis-url URL | --no-redis] [--json]

(a) Latency: 200 entries per tier with realistic payloads cut from real source text (L1 tool answer ~3 KB,
    L2 module summary ~2 KB, L3 packed 2k-token context ~8 KB, L4 search results ~4 KB), each depending on 5
    files; ``--gets`` random hits per tier, each timed around ``TieredCache.get`` (backend read, version check
    against a real SQLite ``files`` table through ``index_versions``, decode). Backends: memory, SQLite (own
    WAL file), Redis (a ``redis-server`` started on loopback when on PATH, or ``--redis-url``).
    Targets: memory and SQLite hits <= 1 ms, Redis <= 2 ms (at the median and p95).
(b) Hit rates: the moatless traces (``actions`` = [kind, path]) replayed as the requests an agent would send
    through the server, one action every ``--seconds-per-action`` (TTL matters only across tasks):
      session start            -> L1 ``overview`` prompt (deps: index generation)
      search:<Find*> -> file F -> L1 ``search`` tool answer; miss -> L4 results (deps: index generation; the query
                                  text is not in the traces, so (kind, F) stands for it); then L2 summary of F
      view / edit / edit_failed F -> L1 ``get_context(focus=F)``; miss -> L3 packed context (deps: F); miss -> L2
                                  summary of F (deps: F) and L4 results of the task's query (deps: generation)
      edit / create F          -> F's version and the index generation move; ``invalidate_paths([F, generation])``
      auto_test_run, finish    -> no context request
    Scenarios: ``cold`` (an empty cache per task: hits come only from the agent repeating itself), ``warm``
    (one cache per repository across its tasks, file versions carried over: optimistic, the tasks' base commits
    differ) and ``warm+rewarm`` (warm, and after each edit the server rebuilds the L1/L2/L3 entries the edit
    retired that depend on files only, as background refresh would; L4 and the overview depend on the whole
    index and stay retired). ``bound`` per tier is 1 - distinct keys / lookups: no cache of any size reaches more
    than that without prefetch, because the first request of every key is a miss.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT_ROOT))

from indexer.cache import (INDEX_DEP, MISSING, MemoryBackend, RedisBackend, SqliteBackend,  # noqa: E402
                           TieredCache, index_versions, make_key)

DEFAULT_TRACES = PROJECT_ROOT.parent / "shared" / "bench" / "trajectories" / "moatless_lite_dev.jsonl"
#: Payload bytes per tier (the brief's sizes: 2k-token context ~8 KB, summaries ~2 KB, search results ~4 KB).
PAYLOAD_BYTES = {"prompt": 3000, "module": 2000, "context": 8000, "results": 4000}
#: Hit-rate targets of the seed specifications.
TARGETS = {"prompt": 0.95, "module": 0.90, "context": 0.85, "results": 0.70}
LATENCY_TARGET_US = {"memory": 1000.0, "sqlite": 1000.0, "redis": 2000.0}
ENTRIES_PER_TIER = 200
DEPS_PER_ENTRY = 5
INDEXED_FILES = 2000
CONTEXT_BUDGET = 2000


# --------------------------------------------------------------------------- #
# (a) latency
# --------------------------------------------------------------------------- #

def source_text() -> str:
    """Real Python source (this repository's engine) to cut realistic payloads from."""
    return "\n".join(p.read_text(encoding="utf-8") for p in sorted((PROJECT_ROOT / "indexer").rglob("*.py")))


def fake_index(folder: Path) -> sqlite3.Connection:
    """A SQLite file with the index's ``files``/``meta`` columns the version check reads."""
    conn = sqlite3.connect(folder / "index.db", check_same_thread=False)
    conn.execute("CREATE TABLE files (path TEXT PRIMARY KEY, version INTEGER NOT NULL, hash TEXT NOT NULL)")
    conn.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT)")
    conn.executemany("INSERT INTO files VALUES (?, 1, ?)", [(f"pkg/m{i}.py", f"h{i}") for i in range(INDEXED_FILES)])
    conn.execute("INSERT INTO meta VALUES ('generation', '1')")
    conn.commit()
    return conn


def measure_latency(cache: TieredCache, text: str, gets: int, rng: random.Random) -> dict[str, dict[str, float]]:
    """Median and p95 (µs) of ``gets`` timed hits per tier."""
    result = {}
    for tier, size in PAYLOAD_BYTES.items():
        keys = []
        for i in range(ENTRIES_PER_TIER):
            start = rng.randrange(0, len(text) - size)
            deps = {f"pkg/m{rng.randrange(INDEXED_FILES)}.py": 1 for _ in range(DEPS_PER_ENTRY)}
            key = make_key("bench", tier, {"i": i})
            cache.put(tier, key, {"text": text[start:start + size], "files": sorted(deps)}, deps)
            keys.append(key)
        samples = []
        for _ in range(gets):
            key = rng.choice(keys)
            started = time.perf_counter()
            value = cache.get(tier, key)
            samples.append((time.perf_counter() - started) * 1e6)
            assert value is not MISSING, f"benchmark entry {key} of tier {tier} missed: the cache is too small"
        samples.sort()
        result[tier] = {"median_us": round(statistics.median(samples), 1),
                        "p95_us": round(samples[int(0.95 * len(samples)) - 1], 1),
                        "payload_bytes": round(statistics.mean(cache.backend.get(tier, k).size for k in keys[:50]))}
    return result


def start_redis(folder: Path) -> tuple[subprocess.Popen, str] | None:
    """A throwaway redis-server on a free loopback port, or None when none is installed."""
    binary = shutil.which("redis-server")
    if binary is None:
        return None
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    proc = subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                             "--dir", str(folder)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    import redis

    client = redis.Redis(port=port)
    for _ in range(500):
        try:
            client.ping()
            return proc, f"redis://127.0.0.1:{port}/0"
        except redis.ConnectionError:
            time.sleep(0.01)
    proc.kill()
    return None


def raw_redis_get(client, gets: int) -> dict[str, float]:
    """Bare GETs of an 8 KB value, back to back and with ~150 µs of CPU work between them (as a cache hit does).

    On a loaded machine the second shows the scheduler's share of a Redis hit's tail latency: after CPU work,
    this process waits longer to run again once Redis has answered.
    """
    client.set("bench:raw", b"x" * PAYLOAD_BYTES["context"])
    result = {}
    for label, work_us in (("tight", 0.0), ("with_150us_work", 150.0)):
        samples = []
        for _ in range(gets):
            until = time.perf_counter() + work_us / 1e6
            while time.perf_counter() < until:
                pass
            started = time.perf_counter()
            client.get("bench:raw")
            samples.append((time.perf_counter() - started) * 1e6)
        samples.sort()
        result[label] = {"median_us": round(statistics.median(samples), 1),
                         "p95_us": round(samples[int(0.95 * gets) - 1], 1)}
    client.delete("bench:raw")
    return result


def latency_benchmark(gets: int, redis_url: str | None, use_redis: bool, seed: int) -> dict:
    """Hit latency per backend and tier."""
    text = source_text()
    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as folder:
        index = fake_index(Path(folder))
        versions = lambda paths: index_versions(index, paths)
        backends = {"memory": lambda: MemoryBackend(), "sqlite": lambda: SqliteBackend(Path(folder) / "cache.db")}
        server = None
        if use_redis:
            if redis_url is None:
                server = start_redis(Path(folder))
                redis_url = server[1] if server else None
            if redis_url is not None:
                from indexer.cache.shared import redis_client

                backends["redis"] = lambda: RedisBackend(redis_client(redis_url, timeout=2.0), "bench")
                results["redis_raw_get"] = raw_redis_get(redis_client(redis_url, timeout=2.0), gets)
        try:
            for name, make in backends.items():
                cache = TieredCache(make(), versions=versions, refresh=False)
                per_tier = measure_latency(cache, text, gets, random.Random(seed))
                cache.close()
                target = LATENCY_TARGET_US[name]
                results[name] = {"tiers": per_tier, "target_us": target,
                                 "meets_target": all(t["p95_us"] <= target for t in per_tier.values())}
        finally:
            if server is not None:
                server[0].kill()
                server[0].wait()
    return results


# --------------------------------------------------------------------------- #
# (b) hit rates replaying agent traces
# --------------------------------------------------------------------------- #

class Replay:
    """The request model of the module docstring, run against one ``TieredCache``."""

    def __init__(self, workspace: str, clock: list[float], rewarm: bool = False) -> None:
        self.ws = workspace
        self.rewarm = rewarm
        self.built_from: dict[str, dict[tuple[str, str], tuple[str, dict, list[str]]]] = defaultdict(dict)
        self.rebuilds = 0
        self.files: dict[str, int] = defaultdict(lambda: 1)
        self.generation = 1
        self.cache = TieredCache(MemoryBackend(), versions=self._versions, clock=lambda: clock[0], refresh=False)
        self.keys: dict[str, set[str]] = defaultdict(set)
        self.lookups: dict[str, int] = defaultdict(int)

    def _versions(self, paths):
        return {p: (self.generation if p == INDEX_DEP else self.files[p]) for p in paths}

    def _get_or_build(self, tier: str, kind: str, params: dict, deps: list[str], build=lambda: None):
        key = make_key(self.ws, kind, params)
        self.keys[tier].add(key)
        self.lookups[tier] += 1
        value = self.cache.get(tier, key)
        if value is MISSING:
            recorded = self._versions(deps)  # read before the build, as the server must
            build()
            self.cache.put(tier, key, "x" * PAYLOAD_BYTES[tier], recorded)
            for path in deps:
                if path != INDEX_DEP:
                    self.built_from[path][(tier, key)] = (tier, kind, deps)

    def session_start(self) -> None:
        self._get_or_build("prompt", "prompt:overview", {"budget": 1500}, [INDEX_DEP])

    def search(self, kind: str, path: str | None, task: str) -> None:
        params = {"kind": kind, "top": path, "task": task}
        self._get_or_build("prompt", "tool:search", params, [INDEX_DEP],
                           lambda: self._get_or_build("results", "search", params, [INDEX_DEP]))
        if path:
            self.summary(path)

    def summary(self, path: str) -> None:
        self._get_or_build("module", "module_summary", {"path": path}, [path])

    def context(self, path: str, task: str) -> None:
        def build_context():
            self.summary(path)
            self._get_or_build("results", "search", {"task-query": task}, [INDEX_DEP])

        params = {"focus": path, "budget": CONTEXT_BUDGET, "task": task}
        self._get_or_build("prompt", "tool:get_context", params, [path],
                           lambda: self._get_or_build("context", "context", params, [path], build_context))

    def edit(self, path: str) -> None:
        self.files[path] += 1
        self.generation += 1
        self.cache.invalidate_paths([path, INDEX_DEP])
        if self.rewarm:  # the server rebuilds what the edit retired and that depends on files only
            for (tier, key), (_, _, deps) in self.built_from[path].items():
                if INDEX_DEP not in deps:
                    self.cache.put(tier, key, "x" * PAYLOAD_BYTES[tier], self._versions(deps))
                    self.rebuilds += 1


def replay_traces(traces: Path, seconds_per_action: float, task_gap: float, warm: bool, rewarm: bool) -> dict:
    """Per-tier hit rate, bound and target over every task of ``traces``."""
    rows = [json.loads(line) for line in traces.read_text(encoding="utf-8").splitlines() if line.strip()]
    clock = [0.0]
    per_repo: dict[str, Replay] = {}
    totals = {t: {"lookups": 0, "hits": 0, "distinct": 0} for t in TARGETS}
    replays = []
    for row in rows:
        if warm:
            replay = per_repo.setdefault(row["repo"], Replay(row["repo"], clock, rewarm))
        else:
            replay = Replay(row["instance_id"], clock, rewarm)
            replays.append(replay)
        task = row["instance_id"]
        replay.session_start()
        for kind, path in row["actions"]:
            clock[0] += seconds_per_action
            if kind.startswith("search:"):
                replay.search(kind.removesuffix(":nohit"), path, task)
            elif kind in ("view", "edit", "edit_failed") and path:
                replay.context(path, task)
            if kind in ("edit", "create") and path:
                replay.edit(path)
        clock[0] += task_gap
    replays.extend(per_repo.values())
    for replay in replays:
        stats = replay.cache.stats()["tiers"]
        for tier in TARGETS:
            totals[tier]["lookups"] += stats[tier]["hits"] + stats[tier]["misses"]
            totals[tier]["hits"] += stats[tier]["hits"]
            totals[tier]["distinct"] += len(replay.keys[tier])
    result = {}
    for tier, t in totals.items():
        rate = t["hits"] / t["lookups"] if t["lookups"] else 0.0
        bound = 1 - t["distinct"] / t["lookups"] if t["lookups"] else 0.0
        result[tier] = {"lookups": t["lookups"], "hit_rate": round(rate, 3), "bound": round(bound, 3),
                        "target": TARGETS[tier], "meets_target": rate >= TARGETS[tier],
                        "target_reachable_without_prefetch": bound >= TARGETS[tier]}
    return {"tasks": len(rows), "rebuilds_after_edits": sum(r.rebuilds for r in replays), "tiers": result}


# --------------------------------------------------------------------------- #
# report
# --------------------------------------------------------------------------- #

def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--traces", type=Path, default=DEFAULT_TRACES, help="moatless trajectories (.jsonl)")
    parser.add_argument("--gets", type=int, default=2000, help="timed hits per tier and backend (>= 1000)")
    parser.add_argument("--redis-url", default=None, help="use this Redis instead of starting a redis-server")
    parser.add_argument("--no-redis", action="store_true", help="skip the Redis backend")
    parser.add_argument("--seconds-per-action", type=float, default=30.0)
    parser.add_argument("--task-gap", type=float, default=600.0, help="seconds between two tasks (warm scenario)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    if not args.traces.is_file():
        print(f"traces file {args.traces} not found: pass --traces PATH to a moatless .jsonl", file=sys.stderr)
        return 1
    report = {
        "load_average": [round(x, 2) for x in os.getloadavg()], "cpus": os.cpu_count(),
        "latency": latency_benchmark(args.gets, args.redis_url, not args.no_redis, args.seed),
        "hit_rates": {scenario: replay_traces(args.traces, args.seconds_per_action, args.task_gap, warm, rewarm)
                      for scenario, warm, rewarm in (("cold", False, False), ("warm", True, False),
                                                     ("warm+rewarm", True, True))},
    }
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print(f"Hit latency (µs): median / p95 per tier; load average {report['load_average']}")
    for backend, r in report["latency"].items():
        if backend == "redis_raw_get":
            print("  (bare Redis GET of 8 KB: " + ", ".join(f"{k} {v['median_us']:.0f}/{v['p95_us']:.0f}"
                                                         for k, v in r.items()) + ")")
            continue
        cells = "  ".join(f"{tier} {t['median_us']:.0f}/{t['p95_us']:.0f}" for tier, t in r["tiers"].items())
        print(f"  {backend:7s} {cells}   target <= {r['target_us']:.0f}: {'ok' if r['meets_target'] else 'MISSED'}")
    for scenario, r in report["hit_rates"].items():
        print(f"Hit rates, {scenario} ({r['tasks']} tasks, {r['rebuilds_after_edits']} rebuilds after edits): "
              "rate / bound (1 - distinct/lookups) vs target")
        for tier, t in r["tiers"].items():
            print(f"  {tier:8s} {t['hit_rate']:.1%} / {t['bound']:.1%} of {t['lookups']} lookups; "
                  f"target {t['target']:.0%}: {'met' if t['meets_target'] else 'not met'}"
                  f"{'' if t['target_reachable_without_prefetch'] else ' (unreachable without prefetch)'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
