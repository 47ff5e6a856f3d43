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


def git_dirs(repo: Path) -> tuple[Path, Path] | None:
    """(git folder, common git folder) of the work tree at ``repo``, absolute; None outside git.

    They differ for a linked work tree (``git worktree add``): its HEAD is in its own folder under the main
    repository's ``.git/worktrees/``, its branches in the common one. Both lie outside ``repo`` when it is a
    folder inside a larger repository.
    """
    out = run(repo, "rev-parse", "--path-format=absolute", "--git-dir", "--git-common-dir")
    lines = out.split("\n") if out else []
    if len(lines) < 2 or not lines[0] or not lines[1]:
        return None
    return Path(lines[0]), Path(lines[1])
