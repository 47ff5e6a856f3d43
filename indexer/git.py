"""Read-only git commands, for the signals mined from a workspace's history (co-change, past commits)."""

from __future__ import annotations

import subprocess
from pathlib import Path

TIMEOUT_S = 60


def run(repo: Path, *args: str) -> str | None:
    """Output of ``git -C repo ARGS``; None when it is not a repository, git is missing or the command fails.

    Output is decoded as UTF-8 with replacement: commit messages and paths in other encodings must not
    stop the mining of everything else.
    """
    try:
        done = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, encoding="utf-8",
                              errors="replace", timeout=TIMEOUT_S, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout if done.returncode == 0 else None


def resolve(repo: Path, rev: str = "HEAD") -> str | None:
    """The commit ``rev`` names in the repository (work tree or bare) at ``repo``, or None."""
    out = run(repo, "rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}")
    return out.strip() if out else None
