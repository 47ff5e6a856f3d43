"""Personalized PageRank on a real index: relevance flows along links, fades with distance, stops at the cap."""

from __future__ import annotations

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
    scores = expand(ws.reader(), {ids["step_a"]: 1.0})
    # b is one call away; c two calls (or module -> member); d only through the module
    assert scores[ids["step_a"]] > scores[ids["step_b"]] > scores[ids["step_c"]] > scores[ids["step_d"]] > 0
    assert ids["alone"] not in scores


def test_neighbourhood_reads_each_link_once_and_respects_the_node_cap(tree, workspace):
    ws = workspace(tree(CHAIN))
    ws.index()
    ids = _ids(ws)
    graph = neighbourhood(ws.reader(), [ids["step_b"]], hops=2)
    pairs = list(zip(graph.src.tolist(), graph.dst.tolist()))
    assert len(pairs) == len(set(pairs)), "a link read twice would count double in the walk"
    found = set(graph.nodes.tolist())
    assert {ids["step_a"], ids["step_c"], ids["step_d"]} <= found
    assert ids["alone"] not in found
    assert graph.nodes[0] == ids["step_b"]  # seeds first

    capped = neighbourhood(ws.reader(), [ids["step_b"]], hops=2, max_nodes=2)
    assert len(capped.nodes) == 2
    kept = set(capped.nodes.tolist())
    for s, d in zip(capped.src.tolist(), capped.dst.tolist()):
        assert {int(capped.nodes[s]), int(capped.nodes[d])} <= kept


def test_no_seeds_no_scores(tree, workspace):
    ws = workspace(tree(CHAIN))
    ws.index()
    assert expand(ws.reader(), {}) == {}
