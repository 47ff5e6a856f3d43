"""Reading the stored graph: find nodes by path, path:line or dotted name, and walk their links both ways."""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Iterable

from indexer.types import INVERSE, LINK_NAMES, Link, Node, NodeKind

_NODE_COLUMNS = "n.id, n.kind, n.name, n.qualname, f.path, n.start_line, n.end_line, n.signature, n.doc"
_NODE_FROM = "nodes n LEFT JOIN files f ON f.id = n.file_id"
_PATH_LINE = re.compile(r"^(?P<path>.+?):(?P<line>\d+)$")
_MAX_MATCHES = 50
#: Links ``related`` lists at most (nearest first); the CLI and the tools say when they stopped there.
MAX_LINKS = 500


class UnknownTarget(LookupError):
    """A target that names no node; the message says what was tried."""


def row_to_node(row) -> Node:
    return Node(id=row[0], kind=NodeKind(row[1]), name=row[2], qualname=row[3], path=row[4],
                start_line=row[5], end_line=row[6], signature=row[7] or "", doc=row[8] or "")


def node_by_id(conn, node_id: int) -> Node | None:
    row = conn.execute(f"SELECT {_NODE_COLUMNS} FROM {_NODE_FROM} WHERE n.id=?", (node_id,)).fetchone()
    return row_to_node(row) if row else None


def nodes_by_ids(conn, ids: Iterable[int]) -> dict[int, Node]:
    ids = list(ids)
    out: dict[int, Node] = {}
    for i in range(0, len(ids), 500):
        chunk = ids[i : i + 500]
        marks = ",".join("?" * len(chunk))
        for row in conn.execute(f"SELECT {_NODE_COLUMNS} FROM {_NODE_FROM} WHERE n.id IN ({marks})", chunk):
            out[row[0]] = row_to_node(row)
    return out


def find_nodes(conn, target: str) -> list[Node]:
    """Nodes a user means by ``target``: ``path``, ``path:line``, a dotted name, or a bare name.

    ``path`` gives the module node; ``path:line`` the innermost definition around
    that line; a dotted name matches a qualified name exactly, else as a suffix
    (``Model.save`` finds ``django.db.models.base.Model.save``).
    """
    target = target.strip()
    if not target:
        raise UnknownTarget("empty target: pass a path, path:line or a dotted name")
    match = _PATH_LINE.match(target)
    if match and _file_id(conn, match["path"]) is not None:
        return _innermost(conn, match["path"].removeprefix("./"), int(match["line"]))
    file_id = _file_id(conn, target)
    if file_id is not None:
        row = conn.execute(f"SELECT {_NODE_COLUMNS} FROM {_NODE_FROM} WHERE n.file_id=? AND n.kind='module'",
                           (file_id,)).fetchone()
        return [row_to_node(row)] if row else []
    rows = conn.execute(f"SELECT {_NODE_COLUMNS} FROM {_NODE_FROM} WHERE n.qualname=? ORDER BY n.id",
                        (target,)).fetchall()
    # A bare name that is also a top-level module's name (Django's tests/bulk_create/) means the
    # definitions of that name first; the module stays among the matches the note names.
    bare_module = "." not in target and rows and all(r[1] == "module" for r in rows)
    if not rows or bare_module:
        last = target.rsplit(".", 1)[-1]
        suffix = [r for r in conn.execute(
            f"SELECT {_NODE_COLUMNS} FROM {_NODE_FROM} WHERE n.name=? ORDER BY n.id LIMIT 2000", (last,))
            if r[1] != "module" and (r[3] == target or r[3].endswith("." + target))]
        rows = (suffix + rows)[:_MAX_MATCHES]
    if not rows:
        rows = _re_exported(conn, target)
    if not rows:
        path = match["path"] if match else target
        skip = conn.execute("SELECT reason, detail FROM skipped WHERE path=?", (path,)).fetchone()
        if skip is not None:  # "no node matches" would send the user looking for a typo
            raise UnknownTarget(f"{path} is not indexed: {skip[0]}" + (f" ({skip[1]})" if skip[1] else "")
                                + "; `codeahead status` lists every skipped file")
        raise UnknownTarget(
            f"no node matches {target!r}: pass a workspace-relative path, path:line, or a (dotted) name "
            "as `codeahead search` shows it")
    return [row_to_node(r) for r in rows]


def _re_exported(conn, target: str) -> list:
    """Rows of the definitions ``package.Name`` means when the package only imports ``Name`` from a module
    of its own (``django.db.models.QuerySet`` is ``django.db.models.query.QuerySet``): the top-level
    definitions named ``Name`` of the modules the package's module imports."""
    package, _, name = target.rpartition(".")
    if not package:
        return []
    return conn.execute(
        f"SELECT {_NODE_COLUMNS} FROM {_NODE_FROM} JOIN nodes m ON m.id = n.parent_id AND m.kind = 'module' "
        "JOIN edges e ON e.dst = m.id AND e.kind = 'imports' JOIN nodes pkg ON pkg.id = e.src "
        "WHERE pkg.kind = 'module' AND pkg.qualname = ? AND n.name = ? ORDER BY n.id LIMIT ?",
        (package, name, _MAX_MATCHES)).fetchall()


def ambiguity(target: str, matches: list[Node], shown: int = 5) -> str | None:
    """A note naming what else ``target`` matched, when it named several nodes (the first is used), else None.

    A bare ``save`` names hundreds of methods on Django: answering for one of them without a word left the
    caller believing it was the one meant.
    """
    if len(matches) < 2:
        return None
    others = ", ".join(f"{n.qualname} ({n.location})" for n in matches[1:shown + 1])
    plus = "+" if len(matches) >= _MAX_MATCHES else ""  # find_nodes lists at most that many
    more = f" and {len(matches) - 1 - shown}{plus} more" if len(matches) - 1 > shown else ""
    # Modules outside packages share names (every conftest.py is ``conftest``): a dotted name can't tell them apart.
    same = all(n.qualname == matches[0].qualname for n in matches[1:shown + 1])
    choose = "They share that dotted name: pass path:line to choose." if same else \
        "Pass a dotted name or path:line to choose."
    return (f"{target!r} names {len(matches)}{plus} nodes; used {matches[0].qualname} ({matches[0].location}). "
            f"Also: {others}{more}. {choose}")


def _file_id(conn, path: str) -> int | None:
    path = path.removeprefix("./")
    row = conn.execute("SELECT id FROM files WHERE path=?", (path,)).fetchone()
    return row[0] if row else None


def _innermost(conn, path: str, line: int) -> list[Node]:
    row = conn.execute(
        f"SELECT {_NODE_COLUMNS} FROM {_NODE_FROM} WHERE f.path=? AND n.start_line<=? AND n.end_line>=? "
        "ORDER BY (n.end_line - n.start_line), n.kind='module' LIMIT 1", (path, line, line)).fetchone()
    if row is None:
        raise UnknownTarget(f"{path} has no line {line}")
    return [row_to_node(row)]


def related(conn, node_id: int, *, kinds: Iterable[str] | None = None, depth: int = 1,
            direction: str = "both", limit: int = MAX_LINKS) -> list[Link]:
    """Links of a node, breadth-first up to ``depth``; cycles are visited once.

    ``kinds`` are link names in either direction ("calls", "called_by",
    "tested_by"...) or stored kinds, which then mean both directions.
    ``direction`` ("out", "in", "both") filters stored kinds given bare.
    """
    if direction not in ("out", "in", "both"):
        raise ValueError(f"direction must be out, in or both, not {direction!r}")
    if depth < 1:
        raise ValueError(f"depth must be >= 1, not {depth}")
    wanted = _wanted(kinds, direction)
    expanded = {node_id}  # a node is walked from once; each (link, node) pair is listed once
    listed: set[tuple[str, int]] = set()
    links: list[tuple[str, int, float, int, int]] = []
    frontier = deque([(node_id, 0)])
    while frontier and len(links) < limit:
        current, level = frontier.popleft()
        if level >= depth:
            continue
        for name, other, confidence in _neighbours(conn, current, wanted):
            if other == node_id or (name, other) in listed:
                continue
            listed.add((name, other))
            links.append((name, other, confidence, level + 1, current))
            if other not in expanded:
                expanded.add(other)
                frontier.append((other, level + 1))
            if len(links) >= limit:
                break
    nodes = nodes_by_ids(conn, {l[1] for l in links})
    return [Link(name, nodes[other], conf, lvl, via if via != node_id else None)
            for name, other, conf, lvl, via in links if other in nodes]


def via_names(links: list[Link]) -> dict[int, str]:
    """The qualified name each link deeper than one hop was reached through, by the link's position."""
    names = {link.node.id: link.node.qualname for link in links}
    return {i: names.get(link.via, "?") for i, link in enumerate(links) if link.via is not None}


def link_direction(kinds: Iterable[str] | None, direction: str | None) -> str:
    """The direction for ``related`` when a user asked for ``kinds``: each name means its own direction (``calls``
    what the node calls, not also its callers) unless ``direction`` says otherwise."""
    if direction is not None:
        return direction
    return "out" if kinds else "both"


def _wanted(kinds: Iterable[str] | None, direction: str) -> dict[str, set[str]]:
    """Stored kind -> set of directions ("out"/"in") to follow."""
    dirs = {"out", "in"} if direction == "both" else {direction}
    if not kinds:
        return {k: set(dirs) for k in INVERSE}
    wanted: dict[str, set[str]] = {}
    for name in kinds:
        if name not in LINK_NAMES:
            raise ValueError(f"unknown link kind {name!r}; valid: {', '.join(sorted(LINK_NAMES))}")
        stored, way = LINK_NAMES[name]
        wanted.setdefault(stored, set()).update(dirs if name == stored else {way})
    return wanted


def _neighbours(conn, node_id: int, wanted: dict[str, set[str]]):
    kinds = list(wanted)
    out_kinds = [k for k in kinds if "out" in wanted[k]]
    in_kinds = [k for k in kinds if "in" in wanted[k]]
    rows: list[tuple[str, int, float]] = []
    if out_kinds:
        m = ",".join("?" * len(out_kinds))
        rows += [(k, d, c) for k, d, c in conn.execute(
            f"SELECT kind, dst, confidence FROM edges WHERE src=? AND kind IN ({m}) ORDER BY kind, confidence DESC, dst",
            (node_id, *out_kinds))]
    if in_kinds:
        m = ",".join("?" * len(in_kinds))
        rows += [(INVERSE[k], s, c) for k, s, c in conn.execute(
            f"SELECT kind, src, confidence FROM edges WHERE dst=? AND kind IN ({m}) ORDER BY kind, confidence DESC, src",
            (node_id, *in_kinds))]
    return rows
