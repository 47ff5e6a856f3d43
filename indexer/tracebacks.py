"""Tracebacks into file:line references, so a recorded error points at code.

Reads what an agent pastes after a failure: CPython tracebacks (chained ones
too), pytest's long / short / line / native reports and ``path:line[:col]``
lines from linters and type checkers. Pure text in, references out; the only
file-system call is ``os.path.realpath`` when mapping paths into a workspace.
"""

from __future__ import annotations

import os
import posixpath
import re
from dataclasses import dataclass
from pathlib import Path, PurePath

# CPython frame: `  File "x.py", line 12, in func` (no `, in` for SyntaxError); `|` prefixes
# appear inside exception groups.
_PY_FRAME = re.compile(r'^[\s|+-]*File "(?P<path>[^"]+)", line (?P<line>\d+)(?:, in (?P<func>.+?))?\s*$')
_PY_HEADER = re.compile(r"^[\s|+-]*Traceback \(most recent call last\):\s*$")
# pytest (`x.py:42: in test_x`, `x.py:42: AssertionError`, `x.py:42: `) and linters
# (`x.py:3:7: F401 ...`, `x.py:3: error: ...`). The path must have an extension so that
# times and URLs are not taken for locations.
_LOCATION = re.compile(
    r"^\s*(?P<path>(?:[A-Za-z]:)?[^\s:\"'<>|]*[^\s:\"'<>|/\\]\.\w+)"
    r":(?P<line>\d+):(?:(?P<col>\d+):?)?(?P<rest>.*)$"
)
_IN_FUNCTION = re.compile(r"^\s*in (?P<func>\S.*?)\s*$")
# pytest's long format names a frame's function only in the source it shows above the location.
_SOURCE_DEF = re.compile(r"^>?\s*(?:async\s+)?def (?P<func>\w+)\s*\(")
# pytest's explanation lines: `E       ValueError: bad`.
_PYTEST_E = re.compile(r"^E\s{1,}(?P<text>.*)$")
# pytest's summary: `FAILED tests/test_x.py::test_y - ValueError: bad`.
_PYTEST_SUMMARY = re.compile(r"^(?:FAILED|ERROR) \S+ - (?P<text>.+)$")
_EXCEPTION_NAME = re.compile(r"^[A-Za-z_][\w.]*$")
#: Path parts that mark installed third-party code, even inside the workspace (a local venv).
_THIRD_PARTY_DIRS = frozenset({"site-packages", "dist-packages"})


@dataclass(frozen=True, slots=True)
class TraceRef:
    """One frame or location: ``function`` is "" when the text does not name it."""

    path: str
    line: int
    function: str = ""

    def to_json(self) -> dict:
        """The reference as stored in an event payload."""
        return {"path": self.path, "line": self.line, "function": self.function}


def parse_traceback(text: str) -> list[TraceRef]:
    """Every file:line the text names, in order of appearance, each location once."""
    refs: list[TraceRef] = []
    index: dict[tuple[str, int], int] = {}
    shown_def = ""
    for raw in text.splitlines():
        ref = _ref_of_line(raw)
        if ref is None:
            source_def = _SOURCE_DEF.match(raw)
            shown_def = source_def["func"] if source_def else shown_def
            continue
        if not ref.function and shown_def:
            ref = TraceRef(path=ref.path, line=ref.line, function=shown_def)
        shown_def = ""
        key = (ref.path, ref.line)
        if key not in index:
            index[key] = len(refs)
            refs.append(ref)
        elif ref.function and not refs[index[key]].function:
            refs[index[key]] = ref
    return refs


def _ref_of_line(line: str) -> TraceRef | None:
    """The reference one line names, if any; pseudo-files like ``<string>`` are not files."""
    match = _PY_FRAME.match(line)
    if match:
        func = match["func"] or ""
    else:
        match = _LOCATION.match(line)
        if not match:
            return None
        named = _IN_FUNCTION.match(match["rest"])
        func = named["func"] if named else ""
    path = match["path"]
    if path.startswith("<"):
        return None
    return TraceRef(path=path, line=int(match["line"]), function=func)


def error_message(text: str) -> str:
    """The final exception line of the text (e.g. ``ValueError: bad``), "" if there is none."""
    lines = text.splitlines()
    candidates = [c for c in (_python_message(lines), _pytest_e_message(lines), _summary_message(lines)) if c]
    if candidates:
        latest = max(candidates)[1]
        # pytest cuts its summary line to the terminal's width ("ValueError: discount o..."): a fuller
        # message it cut (from the E block) says the same in full.
        if latest.endswith("..."):
            fuller = [m for _, m in candidates if m.startswith(latest[:-3]) and len(m) > len(latest) - 3]
            latest = max(fuller, key=len, default=latest)
        return latest
    for line in reversed(lines):
        if line.strip():
            return line.strip()
    return ""


def _python_message(lines: list[str]) -> tuple[int, str] | None:
    """(line index, text) of the exception line closing the last CPython traceback."""
    headers = [i for i, line in enumerate(lines) if _PY_HEADER.match(line)]
    if not headers:
        return None
    for i in range(headers[-1] + 1, len(lines)):
        line = lines[i]
        if line.strip() and not line[0].isspace():
            return i, line.strip()
    return None


def _pytest_e_message(lines: list[str]) -> tuple[int, str] | None:
    """(line index, text) of the first ``E`` line of pytest's last explanation block."""
    last_block_start = None
    for i, line in enumerate(lines):
        if _PYTEST_E.match(line) and (i == 0 or not _PYTEST_E.match(lines[i - 1])):
            last_block_start = i
    if last_block_start is None:
        return None
    text = _PYTEST_E.match(lines[last_block_start])["text"].strip()
    # The block is followed by `path:line: ExcName` in the long format; name bare asserts by it.
    for line in lines[last_block_start + 1 :]:
        if _PYTEST_E.match(line) or not line.strip():
            continue
        location = _LOCATION.match(line)
        exc = location["rest"].strip() if location else ""
        if _EXCEPTION_NAME.match(exc) and not text.startswith(exc):
            text = f"{exc}: {text}"
        break
    return last_block_start, text


def _summary_message(lines: list[str]) -> tuple[int, str] | None:
    """(line index, text) of the last ``FAILED x::y - message`` summary line."""
    for i in range(len(lines) - 1, -1, -1):
        match = _PYTEST_SUMMARY.match(lines[i])
        if match:
            return i, match["text"].strip()
    return None


def workspace_path(path: str, root: str | os.PathLike[str]) -> str | None:
    """``path`` relative to ``root`` in POSIX form, or None if it lies outside or is installed code."""
    candidate = PurePath(path)
    if candidate.is_absolute():
        relative = _relative_to_root(path, root)
        if relative is None:
            return None
    else:
        relative = posixpath.normpath(candidate.as_posix())
        if relative == ".." or relative.startswith("../"):
            return None
    if _THIRD_PARTY_DIRS.intersection(relative.split("/")):
        return None
    return relative


def _relative_to_root(path: str, root: str | os.PathLike[str]) -> str | None:
    """Relative POSIX form of an absolute path under root, trying the literal and symlink-free forms."""
    roots = {Path(os.path.abspath(root)), Path(os.path.realpath(root))}
    paths = {Path(os.path.normpath(path)), Path(os.path.realpath(path))}
    for base in roots:
        for candidate in paths:
            if candidate.is_relative_to(base) and candidate != base:
                return candidate.relative_to(base).as_posix()
    return None


def relativize(refs: list[TraceRef], root: str | os.PathLike[str]) -> list[TraceRef]:
    """The refs inside the workspace, as workspace-relative paths; stdlib and site-packages dropped."""
    out: list[TraceRef] = []
    seen: set[tuple[str, int]] = set()
    for ref in refs:
        relative = workspace_path(ref.path, root)
        if relative is None or (relative, ref.line) in seen:
            continue
        seen.add((relative, ref.line))
        out.append(TraceRef(path=relative, line=ref.line, function=ref.function))
    return out
