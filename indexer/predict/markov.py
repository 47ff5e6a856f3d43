"""File-to-file transition counts (first and second order, backed off), decayed so recent habits weigh more."""

from __future__ import annotations

from dataclasses import dataclass, field

#: Counts halve after this many further transitions: old habits fade, recent ones lead.
HALF_LIFE = 2000
DECAY = 0.5 ** (1.0 / HALF_LIFE)
#: Second-order evidence outweighs first-order once its row holds about this many (decayed) counts.
BACKOFF_K = 2.0
#: Pseudo-count for "somewhere else": one sighting of a move is weak evidence (1 of 1 -> 0.5, 9 of 9 -> 0.9).
SHRINK = 1.0


@dataclass(slots=True)
class Row:
    """Transitions out of one context: decayed weights for scoring, raw counts for reasons."""

    weights: dict[str, float] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    total: int = 0
    stamp: int = 0  # clock value the weights were last decayed to

    def decay_to(self, clock: int) -> None:
        """Bring the weights forward to ``clock`` (lazy decay: only touched rows pay)."""
        if clock > self.stamp:
            factor = DECAY ** (clock - self.stamp)
            for key in self.weights:
                self.weights[key] *= factor
            self.stamp = clock

    def add(self, nxt: str, clock: int) -> None:
        """Count one transition to ``nxt``."""
        self.decay_to(clock)
        self.weights[nxt] = self.weights.get(nxt, 0.0) + 1.0
        self.counts[nxt] = self.counts.get(nxt, 0) + 1
        self.total += 1

    def mass(self) -> float:
        """Sum of the decayed weights."""
        return sum(self.weights.values())

    def to_state(self) -> list:
        """A JSON-ready form."""
        return [sorted([k, w, self.counts.get(k, 0)] for k, w in self.weights.items()), self.total, self.stamp]

    @classmethod
    def from_state(cls, state: list) -> "Row":
        """Rebuild from ``to_state`` output."""
        items, total, stamp = state
        return cls({k: w for k, w, _ in items}, {k: c for k, _, c in items}, total, stamp)


class Markov:
    """P(next | previous two files), backed off to P(next | previous file) by the evidence each row holds."""

    def __init__(self) -> None:
        self.first: dict[str, Row] = {}
        self.second: dict[str, Row] = {}  # key "prev2\0prev1"
        self.clock = 0

    def learn(self, prev2: str | None, prev: str, nxt: str) -> None:
        """Count the move ``prev -> nxt`` (and ``prev2, prev -> nxt`` when there is a ``prev2``)."""
        if prev == nxt:
            return
        self.clock += 1
        self.first.setdefault(prev, Row()).add(nxt, self.clock)
        if prev2 is not None:
            self.second.setdefault(f"{prev2}\0{prev}", Row()).add(nxt, self.clock)

    def scores(self, prev2: str | None, prev: str | None) -> dict[str, float]:
        """Probability of each next file seen after this context, second order blended into first."""
        if prev is None or prev not in self.first:
            return {}
        row1 = self.first[prev]
        row1.decay_to(self.clock)
        mass1 = row1.mass() + SHRINK
        probs = {k: w / mass1 for k, w in row1.weights.items()}
        row2 = self.second.get(f"{prev2}\0{prev}") if prev2 is not None else None
        if row2 is not None:
            row2.decay_to(self.clock)
            mass2 = row2.mass()
            lam = mass2 / (mass2 + BACKOFF_K)
            probs = {k: (1 - lam) * p for k, p in probs.items()}
            for k, w in row2.weights.items():
                probs[k] = probs.get(k, 0.0) + lam * w / mass2
        return probs

    def reason(self, prev: str | None, nxt: str) -> str | None:
        """'followed it N of M times' when the move ``prev -> nxt`` was seen."""
        row = self.first.get(prev) if prev is not None else None
        if row is None or not row.counts.get(nxt):
            return None
        return f"followed it {row.counts[nxt]} of {row.total} times"

    def to_state(self) -> dict:
        """A JSON-ready form."""
        return {
            "clock": self.clock,
            "first": {k: r.to_state() for k, r in sorted(self.first.items())},
            "second": {k: r.to_state() for k, r in sorted(self.second.items())},
        }

    @classmethod
    def from_state(cls, state: dict) -> "Markov":
        """Rebuild from ``to_state`` output."""
        model = cls()
        model.clock = state["clock"]
        model.first = {k: Row.from_state(v) for k, v in state["first"].items()}
        model.second = {k: Row.from_state(v) for k, v in state["second"].items()}
        return model
