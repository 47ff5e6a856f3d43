"""Pick, online, whichever ranking has recently put the actual next file highest: the blend, or one signal first.

Why: the SGD blend learns slowly and cannot turn a noisy signal fully down; where one signal alone is
better (co-change inside a commit, whose files come in random order), the blend loses to its own input.
Scoring each candidate ranking by the reciprocal rank it gave the file that actually came next, decayed
so the switch follows the stream, makes the predictor no worse (after a short warm-up) than its best expert.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

BLEND = "blend"
#: A ranking's record halves over this many scored moves: a change of habits is followed within a few hundred.
HALF_LIFE = 200
DECAY = 0.5 ** (1.0 / HALF_LIFE)
#: The blend's head start (in decayed reciprocal-rank mass): a signal must beat it clearly, not by one lucky move.
BLEND_EDGE = 1.0

#: One candidate as the model ranks it: (path, blended logit, {signal: (score, reason)}).
Candidate = tuple[str, float, dict]


def lead_key(signal: str):
    """Sort key ranking by ``signal`` first (unscored candidates last), the blend breaking ties."""
    if signal == BLEND:
        return lambda c: (-c[1], c[0])
    return lambda c: (-c[2].get(signal, (0.0, ""))[0], -c[1], c[0])


def rank_of(ranked: Sequence[Candidate], actual: str, signal: str) -> int:
    """1-based rank of ``actual`` under the ``signal``-first order of ``ranked``; 0 when it is not a candidate."""
    key = lead_key(signal)
    target = next((key(c) for c in ranked if c[0] == actual), None)
    if target is None:
        return 0
    return 1 + sum(key(c) < target for c in ranked)


class ExpertSwitch:
    """Decayed reciprocal-rank records of each expert ranking, per phase; ``best`` names the one to use."""

    def __init__(self, phases: Iterable[str], signals: Iterable[str]) -> None:
        self.experts = (BLEND, *signals)
        self.score = {phase: {e: BLEND_EDGE if e == BLEND else 0.0 for e in self.experts} for phase in phases}

    def update(self, phase: str, ranked: Sequence[Candidate], actual: str) -> None:
        """Credit each expert with 1/rank of the file that actually came next."""
        record = self.score[phase]
        for expert in self.experts:
            rank = rank_of(ranked, actual, expert)
            record[expert] = record[expert] * DECAY + (1.0 / rank if rank else 0.0)

    def best(self, phase: str) -> str:
        """The expert with the best record (the blend on ties)."""
        record = self.score[phase]
        return max(self.experts, key=lambda e: (record[e], e == BLEND))

    def to_state(self) -> dict:
        """A JSON-ready form."""
        return {phase: dict(record) for phase, record in self.score.items()}

    def load_state(self, state: dict) -> None:
        """Take the records of ``to_state`` output, ignoring experts or phases no longer known."""
        for phase, record in state.items():
            if phase in self.score:
                self.score[phase].update({e: s for e, s in record.items() if e in self.score[phase]})
