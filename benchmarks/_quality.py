"""Shared parts of the retrieval-quality benchmarks: the configurations compared, ranked nodes, metrics, tables."""

from __future__ import annotations

import json

import math
import statistics
import sys
from collections.abc import Iterable, Sequence
from dataclasses import replace
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
if str(PROJECT_ROOT) not in sys.path:  # run as `python benchmarks/x.py` from anywhere
    sys.path.insert(0, str(PROJECT_ROOT))

from indexer import tokens  # noqa: E402
from indexer.context.render import SourceCache  # noqa: E402
from indexer.graph.query import nodes_by_ids  # noqa: E402
from indexer.search import rerank  # noqa: E402
from indexer.search.hybrid import SearchOptions  # noqa: E402
from indexer.types import Node  # noqa: E402

DEFAULT_BENCH = PROJECT_ROOT.parent / "shared" / "bench"
DEFAULT_CORPORA = PROJECT_ROOT / "benchmarks" / ".corpora"

#: The four configurations every run reports side by side.
CONFIGS: dict[str, SearchOptions] = {
    "bm25": SearchOptions(use_dense=False, signals=()),
    "bm25+signals": SearchOptions(use_dense=False),
    "hybrid": SearchOptions(signals=()),
    "full": SearchOptions(),
}


def choose_configs(names: Sequence[str], ablate: str | None, posting_budgets: Sequence[float] = (),
                   alphas: Sequence[float] = ()) -> dict[str, SearchOptions]:
    """The named configurations, plus configuration `ablate` (e.g. `full`) minus each signal in turn
    (`full-graph`), plus each named configuration at each other posting budget (`name@budget`: the
    speed/quality trade-off of lexical.py), plus each named configuration with vectors at each fixed
    lexical share of the fusion (`name~alpha`; by default the share depends on the query)."""
    unknown = [n for n in [*names, *([ablate] if ablate else [])] if n not in CONFIGS]
    if unknown:
        raise SystemExit(f"unknown configuration {unknown[0]!r}: choose from {', '.join(CONFIGS)}")
    chosen = {n: CONFIGS[n] for n in names}
    if ablate:
        base = CONFIGS[ablate]
        chosen.setdefault(ablate, base)
        for signal in rerank.SIGNALS:
            chosen[f"{ablate}-{signal}"] = replace(base, signals=tuple(s for s in rerank.SIGNALS if s != signal))
    for budget in posting_budgets:
        for name in names:
            chosen[f"{name}@{budget:g}"] = replace(CONFIGS[name], posting_budget=budget)
    for alpha in alphas:
        for name in names:
            if CONFIGS[name].use_dense:
                chosen[f"{name}~{alpha:g}"] = replace(CONFIGS[name], alpha=alpha)
    return chosen


def _numbers(text: str) -> list[float] | None:
    """`0.2,0.5` -> [0.2, 0.5]; None when a part is not a number."""
    try:
        return [float(n) for n in text.split(",") if n]
    except ValueError:
        return None


def budgets_arg(text: str) -> list[float]:
    """`--posting-budgets 0.2,0.5` -> [0.2, 0.5]."""
    budgets = _numbers(text)
    if budgets is None:
        raise SystemExit(f"--posting-budgets takes numbers like 0.2,0.5 (shares of all nodes), not {text!r}")
    return budgets


def alphas_arg(text: str) -> list[float]:
    """`--alphas 0.6,0.9` -> [0.6, 0.9], each a lexical share in [0, 1]."""
    alphas = _numbers(text)
    if alphas is None or not all(0.0 <= a <= 1.0 for a in alphas):
        raise SystemExit(f"--alphas takes lexical shares between 0 and 1 like 0.6,0.9, not {text!r}")
    return alphas


def needs_vectors(configs: dict[str, SearchOptions]) -> bool:
    """Whether any configuration reads dense vectors (then the workspace must embed its nodes)."""
    return any(o.use_dense for o in configs.values())


def ranked_nodes(ws, query: str, options: SearchOptions) -> list[Node]:
    """Every candidate node for `query`, best first, library nodes (no file) left out."""
    ranked = ws.ranked(query, options=options)
    found = nodes_by_ids(ws.reader(), [i for i, _, _ in ranked])
    return [found[i] for i, _, _ in ranked if i in found and found[i].path is not None]


class TokenCosts:
    """cl100k tokens of each node's code, counted once per node for all configurations."""

    def __init__(self, ws) -> None:
        self._sources = SourceCache(ws.reader())
        self._costs: dict[int, int] = {}

    def of(self, node: Node) -> int:
        if node.id not in self._costs:
            self._costs[node.id] = tokens.count(self._sources.code(node))
        return self._costs[node.id]


def within_budget(nodes: Iterable[Node], costs: TokenCosts, budget: int) -> list[Node]:
    """The leading hits whose code fits in `budget` tokens together; the walk stops at the first that overflows."""
    spent = 0
    out = []
    for node in nodes:
        spent += costs.of(node)
        if spent > budget:
            break
        out.append(node)
    return out


def dcg(relevances: Sequence[int]) -> float:
    """Discounted cumulative gain with a log2(rank + 1) discount."""
    return sum(rel / math.log2(i + 2) for i, rel in enumerate(relevances))


def ndcg_at_k(ranks: Iterable[int], n_targets: int, k: int) -> float:
    """NDCG@k from the 1-based first rank of each found target; a rank counts once, ideal = min(k, targets)."""
    if n_targets == 0:
        return 0.0
    relevances = [0] * k
    for rank in ranks:
        if 1 <= rank <= k:
            relevances[rank - 1] = 1
    return dcg(relevances) / dcg([1] * min(k, n_targets))


def mean(values: Iterable[float]) -> float:
    """Arithmetic mean; NaN for nothing, so an empty group shows as such instead of as zero."""
    values = list(values)
    return statistics.fmean(values) if values else float("nan")


def table(header: Sequence[str], rows: Iterable[Sequence], first_width: int = 18) -> str:
    """A plain fixed-width table: the first column left-aligned, numbers right-aligned."""
    def cell(value) -> str:
        if isinstance(value, float):
            return "   -" if math.isnan(value) else f"{value:.3f}"
        return str(value)

    rows = [[cell(v) for v in row] for row in rows]
    widths = [max(len(str(h)), *(len(r[i]) for r in rows)) if rows else len(str(h)) for i, h in enumerate(header)]
    widths[0] = max(widths[0], first_width)
    lines = ["  ".join(str(h).ljust(w) if i == 0 else str(h).rjust(w) for i, (h, w) in enumerate(zip(header, widths)))]
    lines.append("  ".join("-" * w for w in widths))
    for row in rows:
        lines.append("  ".join(v.ljust(w) if i == 0 else v.rjust(w) for i, (v, w) in enumerate(zip(row, widths))))
    return "\n".join(lines)


def ablation_deltas(summary: dict[str, dict[str, float]], metrics: Sequence[str], base: str) -> list[list]:
    """Rows of `base minus a signal` against `base` for each metric: negative means the signal helps."""
    return [[name, *(summary[name][m] - summary[base][m] for m in metrics)]
            for name in summary if name.startswith(base + "-")]


def emit(result: dict, out, as_json: bool) -> bool:
    """Write the result to ``out`` (if given) and print it as JSON when asked; True when printed."""
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=1) + "\n")
    if as_json:
        print(json.dumps(result, indent=1))
    return as_json
