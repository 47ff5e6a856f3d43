"""Files changed or visited together (ROSE-style confidence), learned from commits and task file sets."""

from __future__ import annotations

import subprocess
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from pathlib import Path

#: Commits (or task sets) touching more files than this are refactorings, not evidence of coupling.
MAX_SET = 30
#: Git history mined from a workspace: the most recent commits only, so mining stays quick.
MAX_COMMITS = 5000
GIT_TIMEOUT_S = 60
#: Open task sets kept for incremental learning; the least recently used is dropped.
MAX_OPEN_SETS = 64
#: Pseudo-count against a rule seen in few transactions (ROSE needs support for the same reason).
SHRINK = 1.0
_COMMIT_MARK = "\x00"  # git prints it for %x00 in the format


class CoChange:
    """conf(a -> b) = transactions holding both / transactions holding a."""

    def __init__(self) -> None:
        self.count: dict[str, int] = {}
        self.pairs: dict[str, dict[str, int]] = {}
        self.transactions = 0
        self._open: OrderedDict[str, list[str]] = OrderedDict()

    def _pair(self, a: str, b: str) -> None:
        row_a, row_b = self.pairs.setdefault(a, {}), self.pairs.setdefault(b, {})
        row_a[b] = row_a.get(b, 0) + 1
        row_b[a] = row_b.get(a, 0) + 1

    def learn_set(self, files: Iterable[str]) -> bool:
        """Learn one whole transaction; False (ignored) when it is larger than MAX_SET."""
        unique = sorted(set(files))
        if not unique or len(unique) > MAX_SET:
            return False
        self.transactions += 1
        for i, a in enumerate(unique):
            self.count[a] = self.count.get(a, 0) + 1
            for b in unique[i + 1:]:
                self._pair(a, b)
        return True

    def add_to_open(self, key: str, path: str) -> None:
        """Grow the open transaction ``key`` (a task) by one file, learning its pairs at once."""
        members = self._open.pop(key, None)
        if members is None:
            members = []
            self.transactions += 1
            while len(self._open) >= MAX_OPEN_SETS:
                self._open.popitem(last=False)
        self._open[key] = members
        if path in members or len(members) >= MAX_SET:
            return
        self.count[path] = self.count.get(path, 0) + 1
        for other in members:
            self._pair(other, path)
        members.append(path)

    def scores(self, context: Mapping[str, float]) -> dict[str, float]:
        """Sum over the context files (weighted) of conf(context file -> candidate)."""
        out: dict[str, float] = {}
        for a, weight in context.items():
            n = self.count.get(a)
            if not n:
                continue
            for b, both in self.pairs.get(a, {}).items():
                out[b] = out.get(b, 0.0) + weight * both / n
        return out

    def noisy_or(self, context: Mapping[str, float]) -> dict[str, float]:
        """1 - prod(1 - weight * conf): each context file is independent evidence; stays in [0, 1]."""
        miss: dict[str, float] = {}
        for a, weight in context.items():
            n = self.count.get(a)
            if not n:
                continue
            for b, both in self.pairs.get(a, {}).items():
                miss[b] = miss.get(b, 1.0) * (1.0 - weight * both / (n + SHRINK))
        return {b: 1.0 - m for b, m in miss.items()}

    def reason(self, context: Iterable[str], candidate: str) -> str | None:
        """'changed with X in N of M sets' for the context file that supports ``candidate`` most."""
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
            "count": dict(sorted(self.count.items())),
            "pairs": {a: dict(sorted(p.items())) for a, p in sorted(self.pairs.items())},
            "transactions": self.transactions,
            "open": [[k, v] for k, v in self._open.items()],
        }

    @classmethod
    def from_state(cls, state: dict) -> "CoChange":
        """Rebuild from ``to_state`` output."""
        model = cls()
        model.count = dict(state["count"])
        model.pairs = {a: dict(p) for a, p in state["pairs"].items()}
        model.transactions = state["transactions"]
        model._open = OrderedDict((k, list(v)) for k, v in state.get("open", []))
        return model


def _git(root: Path, *args: str) -> str | None:
    """Run a read-only git command in ``root``; None when it is not a git work tree or git is missing."""
    try:
        done = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True,
                              timeout=GIT_TIMEOUT_S, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout if done.returncode == 0 else None


def git_head(root: Path) -> str | None:
    """The commit checked out at ``root``, or None outside a git repository."""
    out = _git(root, "rev-parse", "--verify", "--quiet", "HEAD")
    return out.strip() if out else None


def git_commits(root: Path, since: str | None = None, max_commits: int = MAX_COMMITS) -> list[list[str]]:
    """The file sets of the non-merge commits after ``since`` (or the newest ones) at ``root``, oldest first.

    Returns [] when ``root`` is not a git work tree or git is missing: co-change is then simply unused.
    """
    span = [f"{since}..HEAD"] if since else ["HEAD"]
    out = _git(root, "log", "--no-merges", "--name-only", "--no-renames", f"--max-count={max_commits}",
               "--pretty=format:%x00", *span)
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
