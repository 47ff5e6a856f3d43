"""A structural project overview in the spirit of llms.txt, built from the graph with no LLM.

Purpose from the README's first paragraph, the folder architecture with each
package's docstring, the most imported modules, and the entry points.
"""

from __future__ import annotations

import re
from pathlib import Path

from indexer.testpaths import is_test_path
from indexer.tokens import count

_README_NAMES = ("README.md", "README.rst", "README.txt", "README")
_KEY_MODULES = 12
_FOLDERS = 20


def _purpose(root: Path) -> str:
    for name in _README_NAMES:
        path = root / name
        if path.is_file():
            text = path.read_text(encoding="utf-8", errors="replace")
            paragraphs = [p.strip() for p in re.split(r"\n\s*\n", text) if p.strip()]
            for p in paragraphs:
                if p.startswith(("#", "[!", "![", "<", "..", "=", "-")) or len(p) < 40:
                    continue
                return " ".join(p.split())[:600]
    return ""


def _folders(conn) -> list[tuple[str, int, str]]:
    """Top folders (two levels) by file count, with their package docstring."""
    counts: dict[str, int] = {}
    for (path,) in conn.execute("SELECT path FROM files"):
        parts = path.split("/")
        folder = "/".join(parts[:2]) if len(parts) > 2 else (parts[0] if len(parts) > 1 else ".")
        counts[folder] = counts.get(folder, 0) + 1
    docs = dict(conn.execute(
        "SELECT substr(f.path, 1, length(f.path) - 12), n.doc FROM files f JOIN nodes n ON n.file_id=f.id "
        "WHERE n.kind='module' AND f.path LIKE '%/__init__.py'").fetchall())
    # The project's own code first: Django's tests/ holds 15 of its 20 largest folders.
    ranked = sorted(counts.items(), key=lambda x: (is_test_path(f"{x[0]}/x.py"), -x[1], x[0]))[:_FOLDERS]
    return [(folder, n, docs.get(folder, "")) for folder, n in sorted(ranked)]


def _key_modules(conn) -> list[tuple[str, str, int, str]]:
    """Modules imported by the most other modules: the project's backbone."""
    return conn.execute(
        "SELECT f.path, n.qualname, count(DISTINCT e.src) AS c, n.doc FROM edges e JOIN nodes n ON n.id=e.dst "
        "JOIN files f ON f.id=n.file_id WHERE e.kind='imports' AND n.kind='module' "
        "AND f.path NOT LIKE '%test%' GROUP BY n.id ORDER BY c DESC, f.path LIMIT ?", (_KEY_MODULES,)).fetchall()


def _entry_points(root: Path, conn) -> list[str]:
    out: list[str] = []
    pyproject = root / "pyproject.toml"
    if pyproject.is_file():
        text = pyproject.read_text(encoding="utf-8", errors="replace")
        section = re.search(r"\[project\.scripts\](.*?)(\n\[|\Z)", text, re.S)
        if section:
            out += [f"console script {line.strip()}" for line in section.group(1).strip().splitlines()
                    if "=" in line][:8]
    mains = [(p, m) for p, m in conn.execute("SELECT path, module FROM files WHERE path LIKE '%__main__.py' "
                                             "ORDER BY path") if not is_test_path(p)]  # not a test's fixture
    out += [f"python -m {m.rsplit('.', 1)[0]} ({p})" for p, m in mains[:8]]
    out += [f"{p}: {q}" for p, q in conn.execute(
        "SELECT f.path, n.qualname FROM nodes n JOIN files f ON f.id=n.file_id WHERE n.name='main' "
        "AND n.kind='function' AND f.path NOT LIKE '%test%' ORDER BY f.path LIMIT 8")]
    return out


def overview(root: Path, conn, budget: int = 1500) -> str:
    """The overview text, cut to at most ``budget`` cl100k tokens (whole lines only)."""
    files = conn.execute("SELECT count(*) FROM files").fetchone()[0]
    lines = [f"# {root.name}", ""]
    purpose = _purpose(root)
    if purpose:
        lines += [f"> {purpose}", ""]
    lines += [f"{files} Python files indexed.", "", "## Architecture"]
    lines += [f"- {folder}/ ({n} files)" + (f": {doc}" if doc else "") for folder, n, doc in _folders(conn)]
    key = _key_modules(conn)
    if key:
        lines += ["", "## Key modules (most imported)"]
        lines += [f"- {path} ({qualname}, imported by {c})" + (f": {doc}" if doc else "")
                  for path, qualname, c, doc in key]
    entries = _entry_points(root, conn)
    if entries:
        lines += ["", "## Entry points"] + [f"- {e}" for e in entries]
    return fit_lines(lines, budget)


def fit_lines(lines: list[str], budget: int) -> str:
    """Join whole lines while the text stays within ``budget`` tokens."""
    out: list[str] = []
    for line in lines:
        candidate = "\n".join([*out, line])
        if count(candidate) > budget:
            break
        out.append(line)
    return "\n".join(out)
