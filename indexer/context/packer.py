"""Pack ranked candidates into one text that never costs more than the token budget.

Candidates go in priority order (tier, then score, then key). Each takes its richest
rendering that still fits what is left; once a candidate of tier T fits at no level,
nothing of a lower-priority tier is packed. The final text is counted as a whole and
trimmed from the end until it fits, because BPE counts of joined texts are not sums.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from indexer.tokens import Tokenizer
from indexer.types import Candidate, Dropped, PackedContext, PackedItem, Rendering

SEPARATOR = "\n\n"
REASON_BUDGET = "budget"
REASON_TIER_CUT = "tier_cut"


def priority(c: Candidate) -> tuple[int, float, str]:
    """Sort key: CRITICAL first, then higher score, then key so ties are deterministic."""
    return (c.tier.value, -c.score, c.key)


def name_in_file(path: str, qualname: str) -> str:
    """A definition's name without the module part the path already says (``QuerySet.bulk_create``).

    The module is the longest tail of the path's folders that starts the name: a folder without
    ``__init__.py`` is not part of it (``tests/bulk_create/tests.py`` holds ``bulk_create.tests.X``).
    A module keeps its own name. At a small budget the repeated module costs ~8 tokens a block.
    """
    parts = path.removesuffix(".py").split("/")
    if parts[-1] == "__init__":
        parts.pop()
    for start in range(len(parts)):
        module = ".".join(parts[start:])
        if qualname.startswith(module + "."):
            return qualname[len(module) + 1:]
    return qualname


def block_header(c: Candidate, level: str) -> str:
    """The line an agent cites: ``### path:start-end kind name [level]``, the name relative to the file."""
    if c.path is not None:
        return f"### {c.path}:{c.start_line}-{c.end_line} {c.kind} {name_in_file(c.path, c.name)} [{level}]"
    return f"### {c.kind} {c.name} [{level}]"


def block_text(c: Candidate, r: Rendering) -> str:
    """One candidate's block in the packed text: header line, then the rendering."""
    head = block_header(c, r.level)
    return f"{head}\n{r.text}" if r.text else head


@dataclass(slots=True)
class _Placed:
    """A candidate placed by the greedy pass, with the rendering index it took."""

    candidate: Candidate
    index: int
    block: str
    tokens: int


def _cannot_fit(text: str, room: int, tokenizer: Tokenizer) -> bool:
    """True when ``text`` provably costs more than ``room`` tokens, without counting it."""
    if room < 1:
        return True  # any non-empty text costs at least one token
    max_chars = getattr(tokenizer, "max_token_chars", None)
    return bool(max_chars) and len(text) > room * max_chars


def _first_fit(
    c: Candidate, start: int, room: int, tokenizer: Tokenizer
) -> tuple[int, str, int] | None:
    """The first rendering from ``start`` on whose block fits ``room`` and its own cap: (index, block, tokens)."""
    for i in range(start, len(c.renderings)):
        rendering = c.renderings[i]
        limit = room if rendering.max_tokens is None else min(room, rendering.max_tokens)
        block = block_text(c, rendering)
        if _cannot_fit(block, limit, tokenizer):
            continue
        tokens = tokenizer.count(block)
        if tokens <= limit:
            return i, block, tokens
    return None


def _dropped(c: Candidate, reason: str) -> Dropped:
    """The record of a candidate left out."""
    return Dropped(key=c.key, tier=c.tier, name=c.name, path=c.path, reason=reason)


def _packed(p: _Placed) -> PackedItem:
    """The record of a candidate packed at its chosen level."""
    c = p.candidate
    return PackedItem(
        key=c.key, tier=c.tier, level=c.renderings[p.index].level, tokens=p.tokens,
        score=c.score, kind=c.kind, name=c.name, why=c.why, path=c.path,
        start_line=c.start_line, end_line=c.end_line,
    )


class _Layout:
    """The growing text: its parts and their summed (estimated) cost."""

    def __init__(self, budget: int, tokenizer: Tokenizer, header: str) -> None:
        self.budget = budget
        self.tokenizer = tokenizer
        self.sep_cost = tokenizer.count(SEPARATOR)
        header_cost = tokenizer.count(header)
        # A header that alone overflows is left out; the candidates may still fit.
        self.head = header if header and header_cost <= budget else ""
        self.head_cost = header_cost if self.head else 0
        self.placed: list[_Placed] = []

    def used(self) -> int:
        """Summed cost of the parts so far, separators included."""
        parts = len(self.placed) + (1 if self.head else 0)
        return self.head_cost + sum(p.tokens for p in self.placed) + self.sep_cost * max(parts - 1, 0)

    def room(self) -> int:
        """Tokens a new block may cost, after the separator it brings."""
        has_parts = bool(self.head or self.placed)
        return self.budget - self.used() - (self.sep_cost if has_parts else 0)

    def text(self) -> str:
        """The packed text as it stands."""
        parts = ([self.head] if self.head else []) + [p.block for p in self.placed]
        return SEPARATOR.join(parts)


def _greedy(ordered: list[Candidate], layout: _Layout) -> list[Dropped]:
    """Place candidates in order at their richest fitting rendering; return the dropped."""
    dropped: list[Dropped] = []
    cut_tier: int | None = None  # the tier of the first candidate that fitted nowhere
    used = layout.used()
    has_parts = bool(layout.head)
    for c in ordered:
        if cut_tier is not None and c.tier.value > cut_tier:
            dropped.append(_dropped(c, REASON_TIER_CUT))
            continue
        sep = layout.sep_cost if has_parts else 0
        fit = _first_fit(c, 0, layout.budget - used - sep, layout.tokenizer)
        if fit is None:
            dropped.append(_dropped(c, REASON_BUDGET))
            cut_tier = c.tier.value if cut_tier is None else cut_tier
            continue
        index, block, tokens = fit
        layout.placed.append(_Placed(c, index, block, tokens))
        used += sep + tokens
        has_parts = True
    return dropped


def _trim(layout: _Layout) -> tuple[str, int, list[Dropped]]:
    """Degrade or remove the last-placed candidate until the whole text fits; return it."""
    dropped: list[Dropped] = []
    text = layout.text()
    total = layout.tokenizer.count(text)
    while total > layout.budget:
        last = layout.placed.pop()
        start = last.index + 1
        while (fit := _first_fit(last.candidate, start, layout.room(), layout.tokenizer)) is not None:
            index, block, tokens = fit
            layout.placed.append(_Placed(last.candidate, index, block, tokens))
            text = layout.text()
            total = layout.tokenizer.count(text)
            if total <= layout.budget:
                break
            layout.placed.pop()
            start = index + 1
        else:
            dropped.append(_dropped(last.candidate, REASON_BUDGET))
            text = layout.text()
            total = layout.tokenizer.count(text)
    return text, total, dropped


def pack(
    candidates: Sequence[Candidate], budget: int, tokenizer: Tokenizer, *, header: str = ""
) -> PackedContext:
    """Pack ``candidates`` into at most ``budget`` tokens (counted on the final text)."""
    if budget < 1:
        raise ValueError(f"packing budget must be >= 1 token, got {budget}; pass a positive budget")
    for c in candidates:
        if not c.renderings:
            raise ValueError(f"candidate {c.key!r} has no renderings; offer at least one level")
    ordered = sorted(candidates, key=priority)
    layout = _Layout(budget, tokenizer, header)
    dropped = _greedy(ordered, layout)
    text, total, trimmed = _trim(layout)
    rank = {c.key: i for i, c in enumerate(ordered)}
    dropped = sorted(dropped + trimmed, key=lambda d: rank[d.key])
    return PackedContext(
        text=text, tokens=total, budget=budget,
        items=tuple(_packed(p) for p in layout.placed), dropped=tuple(dropped),
    )
