"""Files changed or visited together (ROSE-style confidence), learned from commits and task file sets."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Mapping
from pathlib import Path

from indexer import git

#: Commits (or task sets) touching more files than this are refactorings, not evidence of coupling.
MAX_SET = 30
#: Git history mined from a workspace: the most recent commits only, so mining stays quick.
MAX_COMMITS = 5000
#: Open task sets kept for incremental learning; the least recently used is dropped.
MAX_OPEN_SETS = 64
#: Decayed counts are stored scaled up by the growth per transaction and rescaled before they overflow.
RESCALE_ABOVE = 1e100
#: Pseudo-count against a rule seen in few transactions (ROSE needs support for the same reason).
SHRINK = 1.0
_COMMIT_MARK = "\x00"  # git prints it for %x00 in the format


class CoChange:
    """conf(a -> b) = transactions holding both / transactions holding a.

    Two tallies of the same transactions: raw counts (for reasons, and the plain ROSE ``scores``) and, with a
    ``half_life``, counts where each transaction weighs GROWTH**its index, so the confidences follow the
    recent coupling (files get split, merged and rewritten; old commits say less about today's pairs).
    """

    def __init__(self, half_life: float | None = None) -> None:
        self.half_life = half_life
        self.growth = 2.0 ** (1.0 / half_life) if half_life else 1.0
        self.count: dict[str, int] = {}
        self.pairs: dict[str, dict[str, int]] = {}
        self.mass: dict[str, float] = {}  # decayed (scaled-up) counts, only with a half life
        self.mass_pairs: dict[str, dict[str, float]] = {}
        self.scale = 1.0  # weight of the latest transaction in ``mass``
        self.transactions = 0
        self._open: OrderedDict[str, list[str]] = OrderedDict()
        self._open_scale: dict[str, float] = {}

    def _next_transaction(self) -> float:
        """Count a new transaction; its weight in the decayed tally (rescaled before it overflows)."""
        self.transactions += 1
        if self.half_life:
            self.scale *= self.growth
            if self.scale > RESCALE_ABOVE:
                f = self.scale
                self.mass = {p: w / f for p, w in self.mass.items()}
                self.mass_pairs = {a: {b: w / f for b, w in row.items()} for a, row in self.mass_pairs.items()}
                self._open_scale = {k: w / f for k, w in self._open_scale.items()}
                self.scale = 1.0
        return self.scale

    def _add(self, a: str, others: Iterable[str], weight: float) -> None:
        """File ``a`` in one more transaction, with ``others`` of it (each pair counted once per call)."""
        self.count[a] = self.count.get(a, 0) + 1
        if self.half_life:
            self.mass[a] = self.mass.get(a, 0.0) + weight
        for b in others:
            row_a, row_b = self.pairs.setdefault(a, {}), self.pairs.setdefault(b, {})
            row_a[b] = row_a.get(b, 0) + 1
            row_b[a] = row_b.get(a, 0) + 1
            if self.half_life:
                mrow_a, mrow_b = self.mass_pairs.setdefault(a, {}), self.mass_pairs.setdefault(b, {})
                mrow_a[b] = mrow_a.get(b, 0.0) + weight
                mrow_b[a] = mrow_b.get(a, 0.0) + weight

    def learn_set(self, files: Iterable[str]) -> bool:
        """Learn one whole transaction; False (ignored) when it is larger than MAX_SET."""
        unique = sorted(set(files))
        if not unique or len(unique) > MAX_SET:
            return False
        weight = self._next_transaction()
        for i, a in enumerate(unique):
            self._add(a, unique[:i], weight)
        return True

    def add_to_open(self, key: str, path: str) -> None:
        """Grow the open transaction ``key`` (a task) by one file, learning its pairs at once."""
        members = self._open.pop(key, None)
        if members is None:
            members = []
            self._open_scale[key] = self._next_transaction()
            while len(self._open) >= MAX_OPEN_SETS:
                old, _ = self._open.popitem(last=False)
                self._open_scale.pop(old, None)
        self._open[key] = members
        if path in members or len(members) >= MAX_SET:
            return
        self._add(path, members, self._open_scale.get(key, self.scale))
        members.append(path)

    def scores(self, context: Mapping[str, float]) -> dict[str, float]:
        """Sum over the context files (weighted) of conf(context file -> candidate), from raw counts (ROSE)."""
        out: dict[str, float] = {}
        for a, weight in context.items():
            n = self.count.get(a)
            if not n:
                continue
            for b, both in self.pairs.get(a, {}).items():
                out[b] = out.get(b, 0.0) + weight * both / n
        return out

    def noisy_or(self, context: Mapping[str, float]) -> dict[str, float]:
        """1 - prod(1 - weight * conf): each context file is independent evidence; stays in [0, 1].

        With a half life, conf comes from the decayed counts, and the pseudo-count against thin support is
        SHRINK transactions as heavy as the latest one.
        """
        decayed = bool(self.half_life)
        count, pairs = (self.mass, self.mass_pairs) if decayed else (self.count, self.pairs)
        shrink = SHRINK * (self.scale if decayed else 1.0)
        miss: dict[str, float] = {}
        for a, weight in context.items():
            n = count.get(a)
            if not n:
                continue
            for b, both in pairs.get(a, {}).items():
                miss[b] = miss.get(b, 1.0) * (1.0 - weight * both / (n + shrink))
        return {b: 1.0 - m for b, m in miss.items()}

    def reason(self, context: Iterable[str], candidate: str) -> str | None:
        """'changed with X in N of M sets' for the context file that supports ``candidate`` most (raw counts)."""
        best = None
        for a in context:
            n, both = self.count.get(a, 0), self.pairs.get(a, {}).get(candidate, 0)
            if both and (best is None or both / n > best[0]):
                best = (both / n, a, both, n)
        if best is None:
            return None
        _, a, both, n = best
        return f"seen with {a} in {both} of {n} commits/tasks"

    def to_state(self) -> dict:
        """A JSON-ready form (open task sets included, so a restart keeps learning them)."""
        return {
            "half_life": self.half_life,
            "count": dict(sorted(self.count.items())),
            "pairs": {a: dict(sorted(p.items())) for a, p in sorted(self.pairs.items())},
            "mass": dict(sorted(self.mass.items())),
            "mass_pairs": {a: dict(sorted(p.items())) for a, p in sorted(self.mass_pairs.items())},
            "scale": self.scale,
            "transactions": self.transactions,
            "open": [[k, v, self._open_scale.get(k, self.scale)] for k, v in self._open.items()],
        }

    @classmethod
    def from_state(cls, state: dict, half_life: float | None = None) -> "CoChange":
        """Rebuild from ``to_state`` output (a state saved without decayed counts starts them afresh)."""
        saved = state.get("half_life")
        model = cls(half_life)
        model.count = dict(state["count"])
        model.pairs = {a: dict(p) for a, p in state["pairs"].items()}
        model.transactions = state["transactions"]
        if saved == half_life and "mass" in state:
            model.mass = dict(state["mass"])
            model.mass_pairs = {a: dict(p) for a, p in state["mass_pairs"].items()}
            model.scale = state["scale"]
        elif half_life:  # no decayed tally saved (older model, or another half life): start it from the raw counts
            model.mass = {p: float(n) for p, n in model.count.items()}
            model.mass_pairs = {a: {b: float(n) for b, n in p.items()} for a, p in model.pairs.items()}
        for entry in state.get("open", []):
            model._open[entry[0]] = list(entry[1])
            model._open_scale[entry[0]] = entry[2] if len(entry) > 2 and saved == half_life else model.scale
        return model


def git_commits(root: Path, since: str | None = None, max_commits: int = MAX_COMMITS) -> list[list[str]]:
    """The file sets of the non-merge commits after ``since`` (or the newest ones) at ``root``, oldest first.

    Paths are relative to ``root`` (``--relative``), as the index's are when the workspace is a folder inside
    a larger repository. Returns [] when ``root`` is not a git work tree or git is missing: co-change is then
    simply unused.
    """
    span = [f"{since}..HEAD"] if since else ["HEAD"]
    out = git.run(root, "log", "--no-merges", "--name-only", "--no-renames", "--relative",
                  f"--max-count={max_commits}", "--pretty=format:%x00", *span)
    if out is None and since:  # history rewritten under us: mine from scratch
        return git_commits(root, None, max_commits)
    if out is None:
        return []
    commits = []
    for chunk in out.split(_COMMIT_MARK):
        files = [line.strip() for line in chunk.splitlines() if line.strip()]
        if files:
            commits.append(files)
    commits.reverse()
    return commits
