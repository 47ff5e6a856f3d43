"""Personalized PageRank over the code graph near the seeds.

Seeds are the search hits, the focus and the task's files. The walk runs on
the subgraph within ``hops`` links of the seeds (both directions of every
edge kind), so its cost depends on the neighbourhood, not on the repository.
Edges come from an EdgeSource (SQLite or an in-memory copy, see ``edges``) and
are handled as numpy arrays end to end: a neighbourhood holds thousands of edges
and a Python loop over them cost more than the queries that read them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from indexer.search.edges import EdgeSource

DAMPING = 0.5  # restart probability 1 - DAMPING: stay close to the seeds
ITERATIONS = 12  # with restart 0.5 the walk has converged to ~1e-4 by then
HOPS = 2
MAX_NODES = 1200  # the walk's cost is bounded by the neighbourhood, not the repository


@dataclass(frozen=True, slots=True)
class Subgraph:
    """Nodes near the seeds (seeds first, then in discovery order) and the weighted links among them.

    ``src``/``dst`` are positions in ``nodes``; each stored edge appears once and is walked both ways.
    """

    nodes: np.ndarray
    src: np.ndarray
    dst: np.ndarray
    weight: np.ndarray


def neighbourhood(edges: EdgeSource, seeds: list[int], hops: int = HOPS, max_nodes: int = MAX_NODES) -> Subgraph:
    """The subgraph within ``hops`` links of ``seeds``, at most ``max_nodes`` nodes (nearest kept).

    Membership tests go through boolean tables indexed by node id (ids are small dense integers):
    ``np.isin`` sorted both sides on every test, a third of the walk's time.
    """
    order = list(dict.fromkeys(seeds))
    frontier = list(order)
    expanded: list[np.ndarray] = []  # ids whose edges were read in an earlier hop
    edge_parts: list[np.ndarray] = []
    for _ in range(hops):
        if not frontier or len(order) >= max_nodes:
            break
        rows = edges.touching(frontier)
        ends = rows[:, :2].ravel().astype(np.int64)  # src, dst of each row in turn
        placed = np.asarray(order, dtype=np.int64)
        size = max(_top(ends), _top(placed)) + 1
        if expanded:  # edges with an end expanded before were read then
            done = _member_table(size, expanded)
            pair = done[ends].reshape(-1, 2)
            rows = rows[~(pair[:, 0] | pair[:, 1])]
            ends = rows[:, :2].ravel().astype(np.int64)
        expanded.append(np.asarray(frontier, dtype=np.int64))
        room = max_nodes - len(order)
        ids, first = np.unique(ends, return_index=True)
        fresh = ids[np.argsort(first, kind="stable")]  # in order of discovery
        fresh = fresh[~_member_table(size, [placed])[fresh]][:max(room, 0)]
        order.extend(fresh.tolist())
        edge_parts.append(rows)
        frontier = fresh.tolist()
    nodes = np.asarray(order, dtype=np.int64)
    if not edge_parts:
        empty = np.empty(0, dtype=np.int64)
        return Subgraph(nodes, empty, empty, np.empty(0))
    rows = np.concatenate(edge_parts)
    src, dst = rows[:, 0].astype(np.int64), rows[:, 1].astype(np.int64)
    position = np.full(max(_top(nodes), _top(src), _top(dst)) + 1, -1, dtype=np.int64)
    position[nodes] = np.arange(len(nodes))  # node id -> its place in ``nodes``, -1 if not there
    src_pos, dst_pos = position[src], position[dst]
    known = (src_pos >= 0) & (dst_pos >= 0)  # edges leaving a capped neighbourhood carry nothing
    return Subgraph(nodes, src_pos[known], dst_pos[known], rows[known, 2])


def _top(ids: np.ndarray) -> int:
    """The largest id in ``ids``, -1 when empty."""
    return int(ids.max()) if len(ids) else -1


def _member_table(size: int, parts: list[np.ndarray]) -> np.ndarray:
    """A boolean table over ids ``0..size-1``, true for the ids in ``parts`` (larger ids are left out)."""
    table = np.zeros(size, dtype=bool)
    for ids in parts:
        table[ids[ids < size]] = True
    return table


def personalized_pagerank(graph: Subgraph, seeds: dict[int, float], iterations: int = ITERATIONS,
                          damping: float = DAMPING) -> dict[int, float]:
    """Stationary scores of a random walk that restarts at the seeds (weights normalised).

    Vectorised: each step spreads every node's rank over its weighted edges with one bincount.
    """
    size = len(graph.nodes)
    position = {int(n): i for i, n in enumerate(graph.nodes)}
    restart = np.zeros(size)
    total = sum(seeds.values()) or 1.0
    for n, w in seeds.items():
        if n in position:
            restart[position[n]] = w / total
    src = np.concatenate([graph.src, graph.dst])  # walk every link both ways
    dst = np.concatenate([graph.dst, graph.src])
    weight = np.concatenate([graph.weight, graph.weight])
    out_weight = np.bincount(src, weights=weight, minlength=size)
    share = np.divide(weight, out_weight[src], out=np.zeros_like(weight), where=out_weight[src] > 0)
    rank = restart.copy()
    for _ in range(iterations):
        rank = damping * np.bincount(dst, weights=rank[src] * share, minlength=size) + (1 - damping) * restart
    keep = np.nonzero(rank > 0)[0]
    return dict(zip(graph.nodes[keep].tolist(), rank[keep].tolist()))


def expand(edges: EdgeSource, seeds: dict[int, float], hops: int = HOPS) -> dict[int, float]:
    """PPR scores of every node near the seeds (seeds included)."""
    if not seeds:
        return {}
    return personalized_pagerank(neighbourhood(edges, list(seeds), hops), seeds)
