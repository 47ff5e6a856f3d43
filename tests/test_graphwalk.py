"""Personalized PageRank on a real index: relevance flows along links, fades with distance, stops at the cap."""

from __future__ import annotations

import random
import time

import numpy as np

from indexer import sqlite
from indexer.search.edges import EdgeArrays, EdgeMemory, SqlEdges
from indexer.search.graphwalk import expand, neighbourhood

CHAIN = {
    # a -> b -> c -> d: a call chain, each step one link further from the seed.
    "pkg/__init__.py": "",
    "pkg/chain.py": (
        "def step_d():\n    return 4\n\n\n"
        "def step_c():\n    return step_d()\n\n\n"
        "def step_b():\n    return step_c()\n\n\n"
        "def step_a():\n    return step_b()\n"
    ),
    "pkg/island.py": "def alone():\n    return 0\n",
}


def _ids(ws) -> dict[str, int]:
    return {n.name: n.id for name in ("step_a", "step_b", "step_c", "step_d", "alone") for n in ws.nodes(name)}


def test_relevance_fades_with_distance_and_never_reaches_unlinked_code(tree, workspace):
    ws = workspace(tree(CHAIN))
    ws.index()
    ids = _ids(ws)
    scores = expand(SqlEdges(ws.reader()), {ids["step_a"]: 1.0})
    # b is one call away; c two calls (or module -> member); d only through the module
    assert scores[ids["step_a"]] > scores[ids["step_b"]] > scores[ids["step_c"]] > scores[ids["step_d"]] > 0
    assert ids["alone"] not in scores


def test_neighbourhood_reads_each_link_once_and_respects_the_node_cap(tree, workspace):
    ws = workspace(tree(CHAIN))
    ws.index()
    ids = _ids(ws)
    graph = neighbourhood(SqlEdges(ws.reader()), [ids["step_b"]], hops=2)
    pairs = list(zip(graph.src.tolist(), graph.dst.tolist()))
    assert len(pairs) == len(set(pairs)), "a link read twice would count double in the walk"
    found = set(graph.nodes.tolist())
    assert {ids["step_a"], ids["step_c"], ids["step_d"]} <= found
    assert ids["alone"] not in found
    assert graph.nodes[0] == ids["step_b"]  # seeds first

    capped = neighbourhood(SqlEdges(ws.reader()), [ids["step_b"]], hops=2, max_nodes=2)
    assert len(capped.nodes) == 2
    kept = set(capped.nodes.tolist())
    for s, d in zip(capped.src.tolist(), capped.dst.tolist()):
        assert {int(capped.nodes[s]), int(capped.nodes[d])} <= kept


def test_no_seeds_no_scores(tree, workspace):
    ws = workspace(tree(CHAIN))
    ws.index()
    assert expand(SqlEdges(ws.reader()), {}) == {}


def test_edges_in_memory_give_the_same_rows_and_walks_as_sqlite(tree, workspace):
    from tests.test_context import _random_workspace

    root = tree({})
    _random_workspace(root / "src", seed=7)
    ws = workspace(root / "src")
    ws.index()
    conn = ws.reader()
    arrays, sql = EdgeArrays.load(conn), SqlEdges(conn)
    ids = [r[0] for r in conn.execute("SELECT id FROM nodes ORDER BY id")]
    rng = random.Random(3)
    for _ in range(30):
        some = rng.sample(ids, k=rng.randint(1, min(8, len(ids)))) + [10**9]  # an id no edge touches
        assert np.array_equal(arrays.touching(some), sql.touching(some))
        seeds = {i: rng.random() + 0.1 for i in some[:3]}
        assert expand(arrays, seeds) == expand(sql, seeds)


def test_edge_memory_serves_only_the_generation_a_request_reads(tree, workspace):
    root = tree(CHAIN)
    ws = workspace(root)
    ws.index()
    conn = ws.reader()
    memory = EdgeMemory(lambda: sqlite.connect(ws.db_path, readonly=True, vectors=False), settle=0.2)
    try:
        assert isinstance(memory.source(conn), SqlEdges)  # nothing loaded yet: read SQLite, load behind
        memory.wait()
        assert isinstance(memory.source(conn), EdgeArrays)
        ids = _ids(ws)
        (root / "pkg" / "island.py").write_text("from pkg.chain import step_a\n\n\ndef alone():\n    return step_a()\n")
        ws.index()
        stale = memory.source(conn)
        assert isinstance(stale, SqlEdges), "the arrays hold the previous generation"
        assert ids["alone"] in {int(x) for x in stale.touching([ids["step_a"]])[:, :2].ravel()}
        memory.wait()
        assert isinstance(memory.source(conn), SqlEdges), "a reload waits until the generation settles"
        time.sleep(0.3)
        memory.source(conn)  # settled: the reload starts
        memory.wait()
        fresh = memory.source(conn)
        assert isinstance(fresh, EdgeArrays)
        assert np.array_equal(fresh.touching([ids["step_a"]]), stale.touching([ids["step_a"]]))
    finally:
        memory.close()


def test_ranking_brings_in_code_linked_to_the_best_hits(tree, workspace):
    from indexer.search import hybrid, rerank

    ws = workspace(tree({
        "shop/__init__.py": "",
        "shop/cart.py": "from shop.money import round_cents\n\n\n"
                        "def checkout_total(cart):\n    '''Checkout: the total of a shopping cart.'''\n"
                        "    return round_cents(sum(cart))\n",
        "shop/money.py": "def round_cents(value):\n    return int(value * 100) / 100\n",
        "shop/unrelated.py": "def banner():\n    return 'hello'\n",
    }))
    ws.index()
    ids = {n.name: n.id for name in ("checkout_total", "round_cents", "banner") for n in ws.nodes(name)}
    query = "checkout total of the shopping cart is wrong"
    without = [i for i, _, _ in hybrid.ranked_ids(ws.reader(), query, options=hybrid.SearchOptions(
        use_dense=False, signals=tuple(s for s in rerank.SIGNALS if s != "graph")))]
    ranked = hybrid.ranked_ids(ws.reader(), query, options=hybrid.SearchOptions(use_dense=False))
    order = [i for i, _, _ in ranked]
    assert ids["round_cents"] not in without  # no word of the query names it
    assert order[0] == ids["checkout_total"]
    assert ids["round_cents"] in order and ids["banner"] not in order
    assert "graph" in dict((i, w) for i, _, w in ranked)[ids["round_cents"]]
