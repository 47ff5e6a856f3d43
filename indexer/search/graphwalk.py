"""Personalized PageRank over the code graph near the seeds.

Seeds are the search hits, the focus and the task's files. The walk runs on
the subgraph within ``hops`` links of the seeds (both directions of every
edge kind), so its cost depends on the neighbourhood, not on the repository.
"""

from __future__ import annotations

from collections import defaultdict

DAMPING = 0.5  # restart probability 1 - DAMPING: stay close to the seeds
ITERATIONS = 20
HOPS = 2
MAX_NODES = 4000
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
                adjacency[src].append((dst, weight))
                adjacency[dst].append((src, weight))
                for other in (src, dst):
                    if other not in seen and len(seen) < max_nodes:
                        seen.add(other)
                        nxt.append(other)
        frontier = nxt
    return adjacency


def personalized_pagerank(adjacency, seeds: dict[int, float], iterations: int = ITERATIONS,
                          damping: float = DAMPING) -> dict[int, float]:
    """Stationary scores of a random walk that restarts at the seeds (weights normalised)."""
    total = sum(seeds.values()) or 1.0
    restart = {n: w / total for n, w in seeds.items()}
    out_weight = {n: sum(w for _, w in edges) for n, edges in adjacency.items()}
    rank = dict(restart)
    for _ in range(iterations):
        nxt: dict[int, float] = defaultdict(float)
        for n, r in rank.items():
            edges = adjacency.get(n)
            if not edges:
                continue
            share = damping * r / out_weight[n]
            for other, w in edges:
                nxt[other] += share * w
        for n, w in restart.items():
            nxt[n] += (1 - damping) * w
        rank = nxt
    return dict(rank)


def expand(conn, seeds: dict[int, float], hops: int = HOPS) -> dict[int, float]:
    """PPR scores of every node near the seeds (seeds included)."""
    if not seeds:
        return {}
    adjacency = neighbourhood(conn, list(seeds), hops)
    return personalized_pagerank(adjacency, seeds)
