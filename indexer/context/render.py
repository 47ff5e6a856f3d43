"""How a node is shown at each level of detail: full code, summary, signature, module summary.

Code comes from the ``sources`` table, the text the graph was built from, so
line ranges always match what is shown even while the file on disk moves on.
"""

from __future__ import annotations

import threading
from array import array
from collections import OrderedDict
from collections.abc import Callable, Sequence

import numpy as np

from indexer.graph.query import row_to_node
from indexer.types import Node, NodeKind, Rendering

#: Names listed per relation in a summary. 4 rather than 8: a summary of a much-used function listed 16
#: callers and tests (~100 tokens); the shorter one leaves room for more candidates (SWE-bench Lite: gold
#: function in the 4k context .658 with 8, .677 with 4).
_MAX_LIST = 4
_FULL_MAX_LINES = 400  # longer definitions are only offered as summaries


class Lines(Sequence[str]):
    """A source's lines, numbered as tree-sitter numbers them: split at ``\n`` only.

    ``str.splitlines`` also splits at form feeds, vertical tabs and Unicode separators, which
    shifted every later line of such a file against its nodes' line ranges. The text is kept
    whole with each line's start offset, and a line is cut out when asked for: ~1.1x the text's
    memory, where a list of line strings cost ~2.5x (a str object per line).
    """

    __slots__ = ("text", "_starts")

    def __init__(self, text: str) -> None:
        self.text = text
        pieces = text.split("\n")
        if pieces and pieces[-1] == "":  # a final newline ends the last line; it opens none
            pieces.pop()
        lengths = np.fromiter(map(len, pieces), dtype=np.int64, count=len(pieces)) + 1
        self._starts = array("q", np.concatenate(([0], np.cumsum(lengths))).tobytes())

    def __len__(self) -> int:
        return len(self._starts) - 1

    def __getitem__(self, index):
        if isinstance(index, slice):
            return [self._line(i) for i in range(*index.indices(len(self)))]
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError("line index out of range")
        return self._line(index)

    def joined(self, start: int, end: int) -> str:
        """``"\\n".join(self[start:end])``, cut out of the text in one piece."""
        start, end, _ = slice(start, end).indices(len(self))
        if start >= end:
            return ""
        chunk = self.text[self._starts[start] : self._starts[end] - 1]
        if "\r" not in chunk:
            return chunk
        chunk = chunk.replace("\r\n", "\n")
        return chunk[:-1] if chunk.endswith("\r") else chunk  # the last line's "\r\n"

    def _line(self, i: int) -> str:
        line = self.text[self._starts[i] : self._starts[i + 1] - 1]
        return line[:-1] if line.endswith("\r") else line


class SourceLines:
    """Split stored sources keyed by (path, version): an LRU that outlives requests.

    Versions change with every write of a file, so an entry can never be stale; shared by
    the requests of one workspace (a lock keeps concurrent requests from racing the LRU).
    """

    def __init__(self, size: int = 256) -> None:
        self.size = size
        self._files: OrderedDict[tuple[str, int], Lines] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, path: str, version: int, read: Callable[[], str]) -> Lines:
        key = (path, version)
        with self._lock:
            lines = self._files.get(key)
            if lines is not None:
                self._files.move_to_end(key)
                return lines
        lines = Lines(read())
        with self._lock:
            self._files[key] = lines
            while len(self._files) > self.size:
                self._files.popitem(last=False)
        return lines


#: How the header line of a nested definition starts, after its decorators.
_HEADER_STARTS = ("def ", "class ", "async ")


class SourceCache:
    """Lines of stored sources as one connection (one read snapshot) sees them, by path."""

    def __init__(self, conn, lines: SourceLines | None = None) -> None:
        self.conn = conn
        self._lines = lines if lines is not None else SourceLines(size=64)
        self._versions: dict[str, tuple[int, int] | None] = {}  # path -> (file id, version) in this snapshot

    def lines(self, path: str) -> Sequence[str]:
        if path not in self._versions:
            self._versions[path] = self.conn.execute("SELECT id, version FROM files WHERE path=?", (path,)).fetchone()
        row = self._versions[path]
        if row is None:
            return []
        file_id, version = row

        def read() -> str:
            text = self.conn.execute("SELECT text FROM sources WHERE file_id=?", (file_id,)).fetchone()
            return text[0] if text else ""

        return self._lines.get(path, version, read)

    def code(self, node: Node) -> str:
        """The node's source lines."""
        if node.path is None:
            return ""
        return self.lines(node.path).joined(node.start_line - 1, node.end_line)

    def own_code(self, node: Node) -> str:
        """A container's own lines, each nested definition collapsed to ``signature: ...``.

        Classes and modules are shown this way so they never repeat their members' code.
        """
        if node.path is None:
            return ""
        lines = self.lines(node.path)
        children = self.conn.execute(
            "SELECT start_line, end_line, signature FROM nodes WHERE parent_id=? ORDER BY start_line",
            (node.id,)).fetchall()
        out: list[str] = []
        line = node.start_line
        for start, end, signature in children:
            if min(start - 1, len(lines)) > line - 1:
                out.append(lines.joined(line - 1, start - 1))
            # A definition's lines start at its decorators: they stay as written (``@property`` tells an
            # agent not to call ``ok()``), and only the rest gives way to the signature.
            last, header = min(end, len(lines)), start
            while header <= last and not lines[header - 1].lstrip().startswith(_HEADER_STARTS):
                header += 1
            if header > last:
                header = start
            elif header > start:
                out.append(lines.joined(start - 1, header - 1))
            first = lines[header - 1] if header - 1 < len(lines) else ""
            indent = first[: len(first) - len(first.lstrip())]
            out.append(f"{indent}{signature}: ...")
            line = max(line, end + 1)
        if min(node.end_line, len(lines)) > line - 1:
            out.append(lines.joined(line - 1, node.end_line))
        return "\n".join(out)


def _names(conn, sql: str, node_id: int) -> list[str]:
    return [r[0] for r in conn.execute(sql, (node_id,)).fetchall()]


def relations(conn, node: Node) -> dict[str, list[str]]:
    """Short lists of what a node calls, who calls it, and its tests: the L3 summary's links.

    Each name once, the most confident link first: an ambiguous call (``append`` resolved to three methods of
    that name) would otherwise fill the list with one word. ``called by`` names code before tests (they have a
    line of their own): the 4 callers of a function that tests call often are then the code that uses it.
    """
    calls = _names(conn, "SELECT n.name FROM edges e JOIN nodes n ON n.id=e.dst WHERE e.src=? AND e.kind='calls' "
                         f"GROUP BY n.name ORDER BY max(e.confidence) DESC, n.name LIMIT {_MAX_LIST}", node.id)
    callers = _names(conn, "SELECT n.qualname FROM edges e JOIN nodes n ON n.id=e.src WHERE e.dst=? AND e.kind='calls' "
                           "GROUP BY n.qualname ORDER BY n.kind = 'test', max(e.confidence) DESC, n.qualname "
                           f"LIMIT {_MAX_LIST}", node.id)  # a literal LIMIT: as a bound parameter, 3x slower
    tests = _names(conn, "SELECT n.name FROM edges e JOIN nodes n ON n.id=e.src WHERE e.dst=? AND e.kind='tests' "
                         f"GROUP BY n.name ORDER BY max(e.confidence) DESC, n.name LIMIT {_MAX_LIST}", node.id)
    short = (".".join(c.rsplit(".", 2)[-2:]) for c in callers)  # Class.method: the module is in the header
    return {"calls": calls, "called by": list(dict.fromkeys(short)), "tests": tests}


def summary_text(conn, node: Node, test_status: dict[str, bool] | None = None) -> str:
    """L3: signature, first docstring line, calls, callers and test status."""
    lines = [node.signature or f"{node.kind.value} {node.name}"]
    if node.doc:
        lines.append(f'    """{node.doc}"""')
    for label, names in relations(conn, node).items():
        if names:
            if label == "tests" and test_status:
                names = [f"{n} ({'pass' if test_status.get(n) else 'FAIL'})" if n in test_status else n
                         for n in names]
            lines.append(f"    # {label}: {', '.join(names)}")
    return "\n".join(lines)


def module_summary(conn, path: str, *, max_members: int = 60) -> str:
    """L2: a module's docstring, its classes and functions with signatures, imports, importers and tests."""
    row = conn.execute(
        "SELECT n.id, n.kind, n.name, n.qualname, f.path, n.start_line, n.end_line, n.signature, n.doc "
        "FROM nodes n JOIN files f ON f.id=n.file_id WHERE f.path=? AND n.kind='module'", (path,)).fetchone()
    if row is None:
        return ""
    module = row_to_node(row)
    out = [f"# {module.qualname} ({path})"]
    if module.doc:
        out.append(f'"""{module.doc}"""')
    members = conn.execute(
        "SELECT n.kind, n.signature, n.doc, n.start_line, n.end_line, n.parent_id = ? FROM nodes n "
        "WHERE n.file_id=(SELECT id FROM files WHERE path=?) AND n.kind != 'module' ORDER BY n.start_line "
        f"LIMIT {int(max_members) + 1}", (module.id, path)).fetchall()  # literal: 75 us, not 125 as a parameter
    for kind, signature, doc, start, end, top in members[:max_members]:
        indent = "" if top else "    "
        out.append(f"{indent}{signature}  # L{start}-{end}" + (f": {doc}" if doc else ""))
    if len(members) > max_members:
        out.append("    ...")
    for label, sql in (
        ("imports", "SELECT n.qualname FROM edges e JOIN nodes n ON n.id=e.dst WHERE e.src=? AND e.kind='imports' "
                    "AND n.kind='module' ORDER BY n.qualname"),
        ("imported by", "SELECT n.qualname FROM edges e JOIN nodes n ON n.id=e.src WHERE e.dst=? AND e.kind='imports' "
                        "ORDER BY n.qualname"),
        ("tested by", "SELECT n.qualname FROM edges e JOIN nodes n ON n.id=e.src WHERE e.kind='tests' AND "
                      "(e.dst=? OR e.dst IN (SELECT id FROM nodes WHERE file_id=(SELECT file_id FROM nodes WHERE id=?)))"
                      " GROUP BY n.qualname ORDER BY max(e.confidence) DESC, n.qualname"),  # surest first
    ):
        params = (module.id, module.id) if label == "tested by" else (module.id,)
        names = [r[0] for r in conn.execute(sql, params).fetchall()]
        if names:
            shown = ", ".join(names[:_MAX_LIST * 2]) + (f", ... ({len(names)} in all)" if len(names) > _MAX_LIST * 2 else "")
            out.append(f"# {label}: {shown}")
    return "\n".join(out)


def renderings(conn, sources: SourceCache, node: Node, *,
               test_status: dict[str, bool] | None = None) -> tuple[Rendering, ...]:
    """A node at every level, richest first: full code, summary, signature; a module: its own code, its
    summary, one line.

    Summaries are made lazily (see Rendering): call this and pack inside one read snapshot.
    """
    out: list[Rendering] = []
    if node.kind == NodeKind.MODULE:
        code = sources.own_code(node)
        if code and code.count("\n") <= _FULL_MAX_LINES:
            out.append(Rendering("full", code))
        if node.path:
            out.append(module_rendering(conn, node.path))
        # One line, so a module that fits at no richer level never cuts the tiers below it from the budget.
        out.append(Rendering("signature", f"module {node.qualname}" + (f": {node.doc}" if node.doc else "")))
        return tuple(out)
    if node.kind == NodeKind.LIBRARY:
        return (Rendering("signature", f"library {node.qualname}"),)
    code = sources.own_code(node) if node.kind == NodeKind.CLASS else sources.code(node)
    if code and code.count("\n") <= _FULL_MAX_LINES:
        out.append(Rendering("full", code))
    out.append(Rendering("summary", make=lambda: summary_text(conn, node, test_status)))
    out.append(Rendering("signature", node.signature or f"{node.kind.value} {node.name}"))
    return tuple(out)


def module_rendering(conn, path: str) -> Rendering:
    """L2 of a module, built only if the packer reaches it."""
    return Rendering("module", make=lambda: module_summary(conn, path))
