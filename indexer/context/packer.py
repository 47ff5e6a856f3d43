"""Pack ranked candidates into one text that never costs more than the token budget.

Candidates go in priority order (tier, then score, then key). Each takes its richest
rendering that still fits what is left; once a candidate of tier T fits at no level,
nothing of a lower-priority tier is packed. The final text is counted as a whole and
trimmed from the end until it fits, because BPE counts of joined texts are not sums.

A rendering is a block with a ``### path:start-end kind name [level]`` header, except a
signature, which is one ``start-end signature`` line of its file's outline: at a small
budget the map of where the further answers are is worth more than their headers.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from operator import itemgetter

from indexer.tokens import Tokenizer
from indexer.types import Candidate, Dropped, PackedContext, PackedItem, Rendering

SEPARATOR = "\n\n"
#: The level shown as lines of a file's outline instead of blocks of their own.
OUTLINE_LEVEL = "signature"
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


def outline_header(path: str) -> str:
    """The header of a file's outline: the signatures packed at that level, one line each."""
    return f"### {path} [{OUTLINE_LEVEL}s]"


def outline_line(c: Candidate, r: Rendering) -> str:
    """One line of a file's outline, ``start-end signature``, the definition named relative to the file.

    A signature block cost ~29 tokens on Django, its header more than the signature; a line under
    its file's header costs ~19 (the header shared), so a 4k context lists ~1.5x the further hits.
    """
    signature = " ".join(r.text.split())
    if c.kind == "module":  # the path above names it
        return f"{c.start_line}-{c.end_line} {signature.replace(f'module {c.name}', 'module', 1)}"
    last = c.name.rsplit(".", 1)[-1]
    shown = name_in_file(c.path or "", c.name)
    for keyword in ("def ", "async def ", "class "):
        if signature.startswith(keyword + last) and shown != last:
            signature = keyword + shown + signature[len(keyword) + len(last):]
            break
    return f"{c.start_line}-{c.end_line} {signature}"


def block_text(c: Candidate, r: Rendering) -> str:
    """One candidate's block in the packed text: header line, then the rendering."""
    head = block_header(c, r.level)
    return f"{head}\n{r.text}" if r.text else head


@dataclass(slots=True)
class _Placed:
    """A candidate placed by the greedy pass: the rendering it took, the text it adds, what that costs."""

    candidate: Candidate
    index: int
    piece: str  # a block, or one line of its file's outline
    outline: bool
    tokens: int  # the piece's estimated cost (an outline's first line: with the outline's header)
    cost: int  # what the layout grew by: ``tokens`` and the separator or newline before the piece


def _cannot_fit(text: str, room: int, tokenizer: Tokenizer) -> bool:
    """True when ``text`` provably costs more than ``room`` tokens, without counting it."""
    if room < 1:
        return True  # any non-empty text costs at least one token
    max_chars = getattr(tokenizer, "max_token_chars", None)
    return bool(max_chars) and len(text) > room * max_chars


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
    """The growing text: blocks and file outlines in the order they were placed, and their estimated cost.

    A block costs its own count plus a separator; an outline line costs its count plus a newline, and
    the first line of a file also its outline's header and a separator. BPE counts of joined texts are
    not sums, so ``pack`` counts the final text once more.
    """

    def __init__(self, budget: int, tokenizer: Tokenizer, header: str) -> None:
        self.budget = budget
        self.tokenizer = tokenizer
        self.sep_cost = tokenizer.count(SEPARATOR)
        self.newline_cost = tokenizer.count("\n")
        header_cost = tokenizer.count(header)
        # A header that alone overflows is left out; the candidates may still fit.
        self.head = header if header and header_cost <= budget else ""
        self.used = header_cost if self.head else 0
        self.placed: list[_Placed] = []
        self._parts = 1 if self.head else 0  # blocks and outlines, the header included
        self._outlined: Counter[str] = Counter()  # path -> lines in its outline
        self._outline_header_costs: dict[str, int] = {}  # path -> its outline header and newline

    def fit(self, c: Candidate, start: int = 0) -> _Placed | None:
        """The first rendering from ``start`` on whose piece fits what is left and its own cap."""
        sep = self.sep_cost if self._parts else 0
        for i in range(start, len(c.renderings)):
            rendering = c.renderings[i]
            outline = rendering.level == OUTLINE_LEVEL and c.path is not None
            piece = outline_line(c, rendering) if outline else block_text(c, rendering)
            opens = outline and not self._outlined[c.path]
            lead = self.newline_cost if outline and not opens else sep
            opening = self._outline_header_cost(c.path) if opens else 0
            room = self.budget - self.used - lead - opening
            limit = room if rendering.max_tokens is None else min(room, rendering.max_tokens)
            if _cannot_fit(piece, limit, self.tokenizer):
                continue
            tokens = self.tokenizer.count(piece)
            if tokens <= limit:
                return _Placed(c, i, piece, outline, tokens + opening, tokens + opening + lead)
        return None

    def _outline_header_cost(self, path: str) -> int:
        """Tokens of a file's outline header and its newline, counted once per path."""
        cost = self._outline_header_costs.get(path)
        if cost is None:
            cost = self._outline_header_costs[path] = self.tokenizer.count(outline_header(path)) + self.newline_cost
        return cost

    def place(self, p: _Placed) -> None:
        """Add a piece ``fit`` just offered."""
        if not p.outline or not self._outlined[p.candidate.path]:
            self._parts += 1
        if p.outline:
            self._outlined[p.candidate.path] += 1
        self.used += p.cost
        self.placed.append(p)

    def pop(self) -> _Placed:
        """Take the last piece back out: the layout is as it was before it was placed."""
        p = self.placed.pop()
        if p.outline:
            self._outlined[p.candidate.path] -= 1
        if not p.outline or not self._outlined[p.candidate.path]:
            self._parts -= 1
        self.used -= p.cost
        return p

    def text(self) -> str:
        """The packed text as it stands."""
        return compose(self.head, [(p.candidate, p.piece, p.outline) for p in self.placed])


def compose(head: str, pieces: Sequence[tuple[Candidate, str, bool]]) -> str:
    """The packed text: the header, then the pieces in order; a file's outline stands where its first
    line came, its lines in file order."""
    parts: list[str | tuple[str, list[tuple[int, str]]]] = [head] if head else []
    outlines: dict[str, list[tuple[int, str]]] = {}  # path -> (start line, line) of its outline
    for c, piece, outline in pieces:
        if not outline:
            parts.append(piece)
        elif c.path in outlines:
            outlines[c.path].append((c.start_line, piece))
        else:
            outlines[c.path] = [(c.start_line, piece)]
            parts.append((c.path, outlines[c.path]))
    return SEPARATOR.join(
        part if isinstance(part, str)
        else "\n".join([outline_header(part[0]), *(line for _, line in sorted(part[1], key=itemgetter(0)))])
        for part in parts)


def _greedy(ordered: list[Candidate], layout: _Layout) -> list[Dropped]:
    """Place candidates in order at their richest fitting rendering; return the dropped."""
    dropped: list[Dropped] = []
    cut_tier: int | None = None  # the tier of the first candidate that fitted nowhere
    for c in ordered:
        if cut_tier is not None and c.tier.value > cut_tier:
            dropped.append(_dropped(c, REASON_TIER_CUT))
            continue
        fit = layout.fit(c)
        if fit is None:
            dropped.append(_dropped(c, REASON_BUDGET))
            cut_tier = c.tier.value if cut_tier is None else cut_tier
            continue
        layout.place(fit)
    return dropped


def _trim(layout: _Layout) -> tuple[str, int, list[Dropped]]:
    """Degrade or remove the last-placed candidate until the whole text fits; return it."""
    dropped: list[Dropped] = []
    text = layout.text()
    total = layout.tokenizer.count(text)
    while total > layout.budget:
        last = layout.pop()
        start = last.index + 1
        while (fit := layout.fit(last.candidate, start)) is not None:
            layout.place(fit)
            text = layout.text()
            total = layout.tokenizer.count(text)
            if total <= layout.budget:
                break
            layout.pop()
            start = fit.index + 1
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
