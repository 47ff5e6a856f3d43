"""Personalized PageRank over the code graph near the seeds.

Seeds are the search hits, the focus and the task's files. The walk runs on
the subgraph within ``hops`` links of the seeds (both directions of every
edge kind), so its cost depends on the neighbourhood, not on the repository.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np

DAMPING = 0.5  # restart probability 1 - DAMPING: stay close to the seeds
ITERATIONS = 12  # with restart 0.5 the walk has converged to ~1e-4 by then
HOPS = 2
MAX_NODES = 1200  # the walk's cost is bounded by the neighbourhood, not the repository
#: How strongly each edge kind carries relevance (either direction).
EDGE_WEIGHTS = {"calls": 1.0, "tests": 0.6, "inherits": 0.8, "imports": 0.3, "contains": 0.7, "depends_on": 0.0}


def neighbourhood(conn, seeds: list[int], hops: int = HOPS, max_nodes: int = MAX_NODES):
    """Weighted undirected adjacency of the subgraph around ``seeds``."""
    adjacency: dict[int, list[tuple[int, float]]] = defaultdict(list)
    frontier = list(dict.fromkeys(seeds))
    seen = set(frontier)
    for _ in range(hops):
        if not frontier or len(seen) >= max_nodes:
            break
        nxt: list[int] = []
        for i in range(0, len(frontier), 400):
            chunk = frontier[i : i + 400]
            marks = ",".join("?" * len(chunk))
            rows = conn.execute(
                f"SELECT src, kind, dst, confidence FROM edges WHERE src IN ({marks}) "
                f"UNION ALL SELECT src, kind, dst, confidence FROM edges WHERE dst IN ({marks})",
                (*chunk, *chunk)).fetchall()
            for src, kind, dst, conf in rows:
                weight = EDGE_WEIGHTS.get(kind, 0.0) * conf
                if weight <= 0:
                    continue
                for other in (src, dst):
                    if other not in seen and len(seen) < max_nodes:
                        seen.add(other)
                        nxt.append(other)
                if src in seen and dst in seen:  # edges leaving the capped neighbourhood carry nothing back
                    adjacency[src].append((dst, weight))
                    adjacency[dst].append((src, weight))
        frontier = nxt
    return adjacency


def personalized_pagerank(adjacency, seeds: dict[int, float], iterations: int = ITERATIONS,
                          damping: float = DAMPING) -> dict[int, float]:
    """Stationary scores of a random walk that restarts at the seeds (weights normalised).

    Vectorised: each step spreads every node's rank over its weighted edges with one bincount.
    """
    nodes = list(dict.fromkeys([*seeds, *adjacency]))
    index = {n: i for i, n in enumerate(nodes)}
    src, dst, weight = [], [], []
    for n, edges in adjacency.items():
        i = index[n]
        for other, w in edges:
            src.append(i)
            dst.append(index[other])
            weight.append(w)
    size = len(nodes)
    restart = np.zeros(size)
    total = sum(seeds.values()) or 1.0
    for n, w in seeds.items():
        restart[index[n]] = w / total
    src_a = np.asarray(src, dtype=np.int64)
    dst_a = np.asarray(dst, dtype=np.int64)
    w_a = np.asarray(weight, dtype=np.float64)
    out_weight = np.bincount(src_a, weights=w_a, minlength=size)
    share = np.divide(w_a, out_weight[src_a], out=np.zeros_like(w_a), where=out_weight[src_a] > 0)
    rank = restart.copy()
    for _ in range(iterations):
        rank = damping * np.bincount(dst_a, weights=rank[src_a] * share, minlength=size) + (1 - damping) * restart
    return {n: float(rank[i]) for i, n in enumerate(nodes) if rank[i] > 0}


def expand(conn, seeds: dict[int, float], hops: int = HOPS) -> dict[int, float]:
    """PPR scores of every node near the seeds (seeds included)."""
    if not seeds:
        return {}
    adjacency = neighbourhood(conn, list(seeds), hops)
    return personalized_pagerank(adjacency, seeds)
