"""Resolve a file's imports, calls, bases and test links into graph edges.

Pure logic over a ``Symbols`` table: no I/O. Each resolved edge carries a
confidence (``indexer.types.Confidence``): through the file's own imports >
same module or class > the only definition of that name > one of a few.

Every lookup the resolution of a file makes is recorded in ``deps`` as a key
that names what was looked up, so a change can tell exactly whose answers it
may alter (see ``indexer.graph.changes``):

- ``q:<qualname>``  a node (or module) with this dotted name exists or not
- ``i:<module>``    the module-level import table of a module (re-exports)
- ``b:<qualname>``  the resolved bases of a class
- ``g:<name>:<k>``  the answer of a global name lookup for kinds ``k``
- ``t:<package>``   a top-level package exists in the workspace
- ``l:<name>``      the modules whose last dotted part is ``name``
- ``f:<name>``      the pytest fixtures of this name, where each is defined

When a file changes, exactly the files whose deps meet the changed keys are
resolved again, so an incremental index equals a full one.
"""

from __future__ import annotations

import builtins
import sys
from dataclasses import dataclass, field

from indexer.graph.facts import FileFacts
from indexer.types import Confidence

_BUILTINS = frozenset(dir(builtins))
#: Methods of the built-in types (``append``, ``join``, ``get``...): called on a receiver of unknown type, the
#: receiver is a str, list or dict far more often than the one workspace class defining the same name.
_BUILTIN_METHODS = frozenset(n for t in (str, bytes, list, dict, set, tuple) for n in dir(t) if not n.startswith("_"))
_STDLIB = frozenset(sys.stdlib_module_names)
_MAX_AMBIGUOUS = 3  # more same-named candidates than this carry no signal
_MAX_BASE_DEPTH = 8
_MEMO_LIMIT = 50_000  # cached lookups per resolver
_MAX_REEXPORT_HOPS = 3
_CALLABLE_KINDS = frozenset({"function", "class"})
_ATTRIBUTE_KINDS = frozenset({"method", "function"})
_FUNCTION_KINDS = frozenset({"function", "method", "test"})
_TEST_PREFIXES = ("test_", "test")
_CONFTEST = "conftest.py"

LIBRARY = "lib:"  # prefix of a library edge target: "lib:numpy"
_CONVENTION_KINDS = ("function", "method", "class")
#: The one string object of each node kind (``Symbols.add_node``).
_KIND_NAMES = {k: k for k in ("module", "class", "function", "method", "test")}
#: Kind sets of global lookups, and the short key each is recorded under in deps ("g:<name>:<key>").
GLOBAL_KEYS = {_CALLABLE_KINDS: "c", _ATTRIBUTE_KINDS: "a"}
CONVENTION_KEY = {_CONVENTION_KINDS: "v", ("class",): "k"}
_KINDS_BY_KEY = {"c": (_CALLABLE_KINDS, False), "a": (_ATTRIBUTE_KINDS, False),
                 "v": (frozenset(_CONVENTION_KINDS), True), "k": (frozenset({"class"}), True)}


@dataclass(slots=True)
class NodeInfo:
    """What resolution needs of a stored node."""

    id: int
    kind: str
    name: str
    qualname: str
    parent: int | None
    file_id: int | None
    in_test: bool = False  # defined in a test file (see facts.is_test_path)
    path: str = ""  # the file's path: picks one of several same-named modules, the same way every time


@dataclass(slots=True)
class Symbols:
    """In-memory lookup tables over every node of the workspace.

    The writer keeps one for the life of a workspace (~30 MB on Django's 44k nodes), so it holds one
    copy of each kind, name and module string (a table loaded from the store had one per row) and
    a qualified name's ids as a tuple: almost every qualified name has one definition.
    """

    nodes: dict[int, NodeInfo] = field(default_factory=dict)
    by_qualname: dict[str, tuple[int, ...]] = field(default_factory=dict)
    by_name: dict[str, list[int]] = field(default_factory=dict)
    #: module name -> module node ids (folders without __init__.py can hold same-named modules)
    modules: dict[str, list[int]] = field(default_factory=dict)
    #: module node id -> alias -> (absolute module, imported name or None), module-level imports only
    module_imports: dict[int, dict[str, tuple[str, str | None]]] = field(default_factory=dict)
    #: module node id -> the modules its module-level ``from x import *`` re-export (``django.db.models``)
    module_stars: dict[int, tuple[str, ...]] = field(default_factory=dict)
    #: class id -> resolved base class ids (from inherits edges)
    bases: dict[int, list[int]] = field(default_factory=dict)
    top_packages: set[str] = field(default_factory=set)
    #: pytest fixture name -> the nodes defining a fixture of that name
    fixtures: dict[str, list[int]] = field(default_factory=dict)
    #: module node id -> (name, node id) of its fixtures (what the next version of the file replaces)
    module_fixtures: dict[int, tuple[tuple[str, int], ...]] = field(default_factory=dict)

    def add_node(self, info: NodeInfo) -> None:
        """Index a workspace node; library nodes are never added (they are named by string, ``lib:x``)."""
        if info.kind == "library":
            return
        info.kind, info.name = _KIND_NAMES.get(info.kind, info.kind), sys.intern(info.name)
        self.nodes[info.id] = info
        self.by_qualname[info.qualname] = (*self.by_qualname.get(info.qualname, ()), info.id)
        if info.kind == "module":
            self.modules.setdefault(info.qualname, []).append(info.id)
            self.top_packages.add(info.qualname.split(".", 1)[0])
        else:
            self.by_name.setdefault(info.name, []).append(info.id)

    def remove_node(self, node_id: int) -> None:
        info = self.nodes.pop(node_id, None)
        if info is None:
            return
        ids = tuple(i for i in self.by_qualname.get(info.qualname, ()) if i != node_id)
        if ids:
            self.by_qualname[info.qualname] = ids
        else:
            self.by_qualname.pop(info.qualname, None)
        if info.kind == "module":
            _remove(self.modules, info.qualname, node_id)
            self.module_imports.pop(node_id, None)
            self.module_stars.pop(node_id, None)
            for name, fixture_id in self.module_fixtures.pop(node_id, ()):
                _remove(self.fixtures, name, fixture_id)
        else:
            _remove(self.by_name, info.name, node_id)
        self.bases.pop(node_id, None)

    def set_module_imports(self, facts: FileFacts) -> None:
        table: dict[str, tuple[str, str | None]] = {}
        stars: list[str] = []
        for module, name, alias, _line, scope in facts.imports:
            if scope != -1:
                continue
            if alias == "*":
                stars.append(sys.intern(module))
            else:
                table[sys.intern(alias)] = (sys.intern(module), name if name is None else sys.intern(name))
        self.module_imports[facts.module_node] = table
        if stars:
            self.module_stars[facts.module_node] = tuple(stars)
        else:
            self.module_stars.pop(facts.module_node, None)

    def set_fixtures(self, facts: FileFacts) -> None:
        """Replace the fixtures of ``facts``' module with the ones this version of the file defines."""
        for name, node_id in self.module_fixtures.pop(facts.module_node, ()):
            _remove(self.fixtures, name, node_id)
        pairs = tuple((sys.intern(name), facts.def_ids[index]) for index, name in facts.fixtures)
        for name, node_id in pairs:
            self.fixtures.setdefault(name, []).append(node_id)
        if pairs:
            self.module_fixtures[facts.module_node] = pairs

    def module(self, qualname: str) -> int | None:
        """The module of that name; among same-named ones (no __init__.py), the one with the smallest path."""
        ids = self.modules.get(qualname)
        if not ids:
            return None
        return ids[0] if len(ids) == 1 else min(ids, key=lambda i: self.nodes[i].path)

    def rebuild_top_packages(self) -> None:
        self.top_packages = {q.split(".", 1)[0] for q in self.modules}


def ordered_bases(expressions: tuple[str, ...], ids: list[int], nodes: dict[int, NodeInfo]) -> list[int]:
    """A class's resolved bases in the order ``super()`` reads them, the same in a live pass and in a table loaded
    from the store (which keeps the inherits edges, not which expression each came from): by the first base
    expression ending in the base's name (``models.Model`` names ``Model``), then by path and qualified name.
    An expression that resolved to several same-named classes gives them in an order node ids cannot change."""
    last = [e.rsplit(".", 1)[-1] for e in expressions]

    def key(node_id: int) -> tuple:
        info = nodes[node_id]
        position = last.index(info.name) if info.name in last else len(last)
        return position, info.path, info.qualname, node_id

    return sorted(ids, key=key)


def _module_level(nodes: dict[int, NodeInfo], node_id: int) -> bool:
    """Defined at the top of its module (not in a class)."""
    parent = nodes.get(nodes[node_id].parent)
    return parent is not None and parent.kind == "module"


def _remove(index: dict[str, list[int]], key: str, node_id: int) -> None:
    ids = index.get(key)
    if ids and node_id in ids:
        ids.remove(node_id)
        if not ids:
            del index[key]


@dataclass(slots=True)
class Resolution:
    """The edges of one file and the names its resolution consulted."""

    edges: dict[tuple[int, str, int | str], float] = field(default_factory=dict)
    deps: set[str] = field(default_factory=set)

    def add(self, src: int, kind: str, dst: int | str, confidence: float) -> None:
        key = (src, kind, dst)
        if self.edges.get(key, -1.0) < confidence:
            self.edges[key] = confidence


class Resolver:
    """Resolves one file at a time against the shared ``Symbols``."""

    def __init__(self, symbols: Symbols) -> None:
        self.symbols = symbols
        self._by_last: dict[str, list[int]] | None = None
        # Lookups are pure while the symbol table is fixed: cache each answer with the names it consulted.
        self._memo: dict[tuple, tuple[list, frozenset[str]]] = {}
        self._globals: dict[str, list[tuple[int | str, float]]] = {}  # answers of _global by deps key

    def _cached(self, key: tuple, out: Resolution, compute) -> list:
        """``compute(deps)`` once per key; replays the consulted names into ``out.deps`` on every hit."""
        hit = self._memo.get(key)
        if hit is None:
            deps: set[str] = set()
            result = compute(Resolution(deps=deps))
            hit = (result, frozenset(deps))
            if len(self._memo) >= _MEMO_LIMIT:
                self._memo.clear()  # bounded memory; answers are recomputed identically
            self._memo[key] = hit
        out.deps.update(hit[1])
        return hit[0]

    def invalidate(self) -> None:
        """Forget cached lookups (the bases table changed)."""
        self._memo.clear()
        self._globals.clear()

    # ------------------------------------------------------------------ #
    # phase 1: bases (independent of the bases table, so order never matters)
    # ------------------------------------------------------------------ #
    def resolve_bases(self, facts: FileFacts, out: Resolution) -> dict[int, list[int]]:
        """Resolve class bases into inherits edges; returns class id -> base ids, for every class of the file.

        A class without base expressions maps to []: one that lost its bases must replace its old entry in
        the bases table, and tell the files whose lookups walked through it (``b:``) to resolve again.
        """
        scope = _FileScope(facts)
        result: dict[int, list[int]] = {class_id: [] for class_id, kind in zip(facts.def_ids, facts.def_kinds)
                                        if kind == "class"}
        for index, bases in facts.bases:
            class_id = facts.def_ids[index]
            found: list[int] = []
            for base in bases:
                for node_id, conf in self._resolve(base, facts.def_parents[index], scope, out, walk_bases=False):
                    if isinstance(node_id, int) and self.symbols.nodes[node_id].kind == "class" and node_id != class_id:
                        out.add(class_id, "inherits", node_id, conf)
                        if node_id not in found:
                            found.append(node_id)
            result[class_id] = ordered_bases(bases, found, self.symbols.nodes)
        return result

    # ------------------------------------------------------------------ #
    # phase 2: imports, calls, tests, libraries
    # ------------------------------------------------------------------ #
    def resolve_links(self, facts: FileFacts, out: Resolution) -> None:
        """Every edge of the file except contains and inherits."""
        scope = _FileScope(facts)
        self._imports(facts, scope, out)
        nodes = self.symbols.nodes
        # The same name used again in the same scope (on another line) adds the same edges: skip it.
        seen: set[tuple[str, str, int]] = set()
        for kind, target, _line, where in facts.references:
            key = (kind, target, where)
            if key in seen:
                continue
            seen.add(key)
            src = facts.def_ids[where] if where >= 0 else facts.module_node
            for dst, conf in self._resolve(target, where, scope, out, walk_bases=True, call=kind == "call"):
                if isinstance(dst, str):
                    out.add(src, "depends_on", dst, conf)
                    continue
                if kind == "name" and conf < Confidence.SAME_MODULE:
                    continue  # a bare name found only by a global guess is noise
                if nodes[dst].kind in ("module", "test"):
                    continue
                out.add(src, "calls", dst, conf)
        self._tests(facts, out)
        self._fixtures(facts, scope, out)

    def _imports(self, facts: FileFacts, scope: "_FileScope", out: Resolution) -> None:
        src = facts.module_node
        for module, name, alias, _line, where in facts.imports:
            if not module:
                continue
            target = self._module_or_prefix(module, out)
            if target is None:
                lib = LIBRARY + module.split(".", 1)[0]
                out.add(src, "depends_on", lib, Confidence.STRUCTURAL)
                if where >= 0:
                    out.add(facts.def_ids[where], "depends_on", lib, Confidence.STRUCTURAL)
                continue
            if target != src:
                out.add(src, "imports", target, Confidence.STRUCTURAL)
            if name and name != "*":
                for node_id, conf in self._qualified(f"{module}.{name}", out, walk_bases=False):
                    if isinstance(node_id, int) and node_id != src:
                        out.add(src, "imports", node_id, conf)

    def _module_or_prefix(self, module: str, out: Resolution) -> int | None:
        """The workspace module (or its deepest existing package) an import names, else None (a library)."""
        parts = module.split(".")
        out.deps.add("t:" + parts[0])
        if parts[0] not in self.symbols.top_packages:
            return None
        while parts:
            prefix = ".".join(parts)
            out.deps.add("q:" + prefix)
            node = self.symbols.module(prefix)
            if node is not None:
                return node
            parts.pop()
        return None

    def _tests(self, facts: FileFacts, out: Resolution) -> None:
        """Test nodes link to what they exercise: their resolved calls, and by naming convention."""
        test_ids = {facts.def_ids[i] for i, k in enumerate(facts.def_kinds) if k == "test"}
        if not facts.is_test_file and not test_ids:
            return
        nodes = self.symbols.nodes
        calls = [(src, dst, conf) for (src, kind, dst), conf in out.edges.items() if kind == "calls"]
        for src, dst, conf in calls:
            if src in test_ids and isinstance(dst, int) and not nodes[dst].in_test:
                out.add(src, "tests", dst, conf)
        for index, kind in enumerate(facts.def_kinds):
            name = facts.def_names[index]
            if kind == "test":
                for dst in self._convention_targets(_strip_test(name), _CONVENTION_KINDS, out):
                    out.add(facts.def_ids[index], "tests", dst, Confidence.CONVENTION)
            elif kind == "class" and name.startswith("Test") and len(name) > 4:
                for dst in self._convention_targets(name[4:], ("class",), out):
                    out.add(facts.def_ids[index], "tests", dst, Confidence.CONVENTION)
        if facts.is_test_file:
            stem = facts.module.rsplit(".", 1)[-1]
            subject = _strip_test(stem) if stem.startswith("test") else stem.removesuffix("_test")
            if subject and subject != stem:
                out.deps.add("l:" + subject)
                for node_id in self._tested_modules(facts, subject):
                    out.add(facts.module_node, "tests", node_id, Confidence.CONVENTION)

    def _fixtures(self, facts: FileFacts, scope: "_FileScope", out: Resolution) -> None:
        """Tests and fixtures depend on the fixtures they ask for by parameter name (``used_by`` backwards)."""
        for index, name in facts.requests:
            out.deps.add("f:" + name)
            src = facts.def_ids[index]
            for dst, conf in self._fixture(name, src, index, facts, scope, out):
                out.add(src, "depends_on", dst, conf)

    def _fixture(self, name: str, src: int, index: int, facts: FileFacts, scope: "_FileScope",
                 out: Resolution) -> list[tuple[int, float]]:
        """The fixture ``name`` as pytest finds it for a definition of ``facts``: in the test's class, in its
        module (defined or imported there), in the nearest ``conftest.py`` of its folder or one above, else
        in a plugin module of the workspace (pytest's own ``_pytest/*.py``) when there are few.

        A fixture never provides itself: ``def client(client)`` overrides the one further out and asks for it.
        """
        nodes = self.symbols.nodes
        candidates = [i for i in self.symbols.fixtures.get(name, ()) if i != src]
        if not candidates:
            return []
        classes = set()
        parent = facts.def_parents[index]
        while parent >= 0:
            classes.add(facts.def_ids[parent])
            parent = facts.def_parents[parent]
        own = [i for i in candidates if nodes[i].file_id == facts.file_id]
        in_class = [i for i in own if nodes[i].parent in classes]
        at_top = [i for i in own if nodes[i].parent == facts.module_node]
        if in_class or at_top:  # of several definitions the last one is bound
            return [((in_class or at_top)[-1], Confidence.SAME_MODULE)]
        bound = scope.imported(name, -1)
        if bound is not None and bound[1] is not None:
            found = [i for i, _ in self._qualified(f"{bound[0]}.{bound[1]}", out, walk_bases=False)
                     if i in candidates]
            if found:
                return [(i, Confidence.IMPORT) for i in found]
        folder = facts.path.rpartition("/")[0]
        nearest, depth = None, -1  # the deepest conftest.py above the test; of two definitions there, the last
        for i in candidates:
            where, _, base = nodes[i].path.rpartition("/")
            if base != _CONFTEST or not _module_level(nodes, i):
                continue
            if where and folder != where and not folder.startswith(where + "/"):
                continue  # a conftest.py of another folder
            level = where.count("/") + 1 if where else 0
            if level >= depth:
                nearest, depth = i, level
        if nearest is not None:
            return [(nearest, Confidence.IMPORT)]
        plugins = [i for i in candidates if not nodes[i].in_test and _module_level(nodes, i)
                   and nodes[i].path.rpartition("/")[2] != _CONFTEST]
        if len(plugins) == 1:
            return [(plugins[0], Confidence.GLOBAL_UNIQUE)]
        if len(plugins) <= _MAX_AMBIGUOUS:
            return [(i, Confidence.AMBIGUOUS) for i in plugins]
        return []

    def _tested_modules(self, facts: FileFacts, subject: str) -> list[int]:
        """The modules ``test_<subject>.py`` tests: those named ``subject`` it imports (from), else all of them
        when they are few. Django has 33 modules named ``base``; its template tests import one."""
        nodes = self.symbols.nodes
        named = [i for i in self._modules_by_last_name().get(subject, ()) if not nodes[i].in_test]
        imported = {module for module, *_ in facts.imports} | {f"{m}.{n}" for m, n, *_ in facts.imports if n}
        chosen = [i for i in named if nodes[i].qualname in imported]
        return chosen or (named if len(named) <= _MAX_AMBIGUOUS else [])

    def _modules_by_last_name(self) -> dict[str, list[int]]:
        """Module ids by the last part of their dotted name (built once per resolver)."""
        if self._by_last is None:
            self._by_last = {}
            for qualname, node_ids in self.symbols.modules.items():
                self._by_last.setdefault(qualname.rsplit(".", 1)[-1], []).extend(node_ids)
        return self._by_last

    def _convention_targets(self, subject: str, kinds: tuple[str, ...], out: Resolution) -> list[int]:
        """Definitions a test name points at: test_parse_url -> parse_url, else parse."""
        parts = subject.split("_")
        while parts:
            name = "_".join(parts)
            key = CONVENTION_KEY[kinds]
            out.deps.add(f"g:{name}:{key}")
            found, many = global_candidates(self.symbols, name, key)
            if found or many:  # the longest name that exists decides; too many definitions mean none
                return sorted(found)
            parts.pop()
        return []

    # ------------------------------------------------------------------ #
    # name resolution
    # ------------------------------------------------------------------ #
    def _resolve(
        self, target: str, where: int, scope: "_FileScope", out: Resolution, *, walk_bases: bool, call: bool = True
    ) -> list[tuple[int | str, float]]:
        parts = target.split(".")
        head = parts[0]
        if head == "?":
            return self._guess_attribute(parts[-1], out)
        if head in ("self", "cls") and len(parts) >= 2:
            owner = scope.enclosing_class(where)
            if owner is not None and len(parts) == 2:
                found = self._member(scope.facts.def_ids[owner], parts[1], out, walk_bases)
                if found:
                    return [(i, Confidence.SAME_MODULE) for i in found]
            return self._guess_attribute(parts[-1], out) if walk_bases else []
        if head == "super" and len(parts) >= 2:
            owner = scope.enclosing_class(where)
            if owner is None or not walk_bases:
                return []
            class_id = scope.facts.def_ids[owner]
            for base in self.symbols.bases.get(class_id, ()):  # the first base that has it, as the MRO reads them
                found = self._member(base, parts[-1], out, walk_bases)
                if found:
                    return [(i, Confidence.SAME_MODULE) for i in sorted(found)]
            return []
        local = scope.local(head, where)
        if local is not None:
            node_id = scope.facts.def_ids[local]
            return [(i, Confidence.SAME_MODULE) for i in self._walk(node_id, parts[1:], out, walk_bases)]
        bound = scope.imported(head, where)
        if bound is not None:
            module, name = bound
            if name is None:
                base = head if module.split(".", 1)[0] == head else module
            else:
                base = f"{module}.{name}"
            top = base.split(".", 1)[0]
            out.deps.add("t:" + top)
            if top not in self.symbols.top_packages:
                return [(LIBRARY + top, Confidence.IMPORT)]
            qual = ".".join([base, *parts[1:]])
            found = self._qualified(qual, out, walk_bases)
            if found:
                return found
            if len(parts) > 1 and walk_bases:
                return self._guess_attribute(parts[-1], out)
            return []
        for module in scope.star_modules(where):
            found = self._qualified(f"{module}.{target}", out, walk_bases)
            if found:
                return found
        if head in _BUILTINS and len(parts) == 1:
            return []
        if len(parts) == 1:
            return self._global(head, _CALLABLE_KINDS, out) if call else []
        return self._guess_attribute(parts[-1], out) if walk_bases else []

    def _qualified(self, qualname: str, out: Resolution, walk_bases: bool, hops: int = 0) -> list[tuple[int | str, float]]:
        """Nodes with this dotted name, following re-exports (``from .x import y`` in a package)."""
        return self._cached(("q", qualname, walk_bases, hops), out,
                            lambda deps: self._qualified_uncached(qualname, deps, walk_bases, hops))

    def _qualified_uncached(self, qualname: str, out: Resolution, walk_bases: bool, hops: int) -> list:
        out.deps.add("q:" + qualname)
        direct = self.symbols.by_qualname.get(qualname)
        if direct:
            return [(i, Confidence.IMPORT) for i in self._last_per_file(direct)]
        parts = qualname.split(".")
        # Longest module prefix, then walk the rest as attributes.
        for cut in range(len(parts) - 1, 0, -1):
            module = ".".join(parts[:cut])
            out.deps.add("q:" + module)
            module_id = self.symbols.module(module)
            if module_id is None:
                continue
            rest = parts[cut:]
            # A class attribute inherited from a base: Module.Class.method
            out.deps.add(f"q:{module}.{rest[0]}")
            first = self.symbols.by_qualname.get(f"{module}.{rest[0]}")
            if first and walk_bases and len(rest) >= 2:
                found = []
                for node_id in first:
                    found.extend(self._walk(node_id, rest[1:], out, walk_bases))
                if found:
                    return [(i, Confidence.IMPORT) for i in found]
            out.deps.add("i:" + module)
            reexport = self.symbols.module_imports.get(module_id, {}).get(rest[0])
            if reexport is not None and hops < _MAX_REEXPORT_HOPS:
                src_module, src_name = reexport
                head = f"{src_module}.{src_name}" if src_name else src_module
                return self._qualified(".".join([head, *rest[1:]]), out, walk_bases, hops + 1)
            if hops < _MAX_REEXPORT_HOPS and not rest[0].startswith("_"):  # a star exports public names
                for src_module in self.symbols.module_stars.get(module_id, ()):
                    found = self._qualified(".".join([src_module, *rest]), out, walk_bases, hops + 1)
                    if found:
                        return found
            return []
        return []

    def _last_per_file(self, ids: tuple[int, ...]) -> tuple[int, ...]:
        """Of several definitions of one qualified name in a file (``@overload`` signatures, a redefinition),
        the last: the one the name is bound to, as Python binds it. Ids grow in document order within a file.
        A ``.pyi`` stub's definitions give way to the ``.py`` module's beside it, which is what runs. Same-named
        modules of different folders (without ``__init__.py``) all stay."""
        if len(ids) < 2:
            return ids
        nodes = self.symbols.nodes
        last: dict[int | None, int] = {}
        for i in ids:
            key = nodes[i].file_id
            if i > last.get(key, -1):
                last[key] = i
        found = sorted(last.values())
        code = {nodes[i].path for i in found if not nodes[i].path.endswith(".pyi")}
        return tuple(i for i in found if not (nodes[i].path.endswith(".pyi") and nodes[i].path[:-1] in code))

    def _walk(self, node_id: int, rest: list[str], out: Resolution, walk_bases: bool) -> list[int]:
        """Follow attributes from a node: a class's members (inherited too), a module's names."""
        if not rest:
            return [node_id]
        info = self.symbols.nodes[node_id]
        if info.kind == "module":
            return [i for i, _ in self._qualified(f"{info.qualname}.{'.'.join(rest)}", out, walk_bases) if isinstance(i, int)]
        if info.kind != "class" or len(rest) > 2:
            return []
        members = self._member(node_id, rest[0], out, walk_bases)
        if len(rest) == 1:
            return members
        return [m for member in members for m in self._walk(member, rest[1:], out, walk_bases)]

    def _member(self, class_id: int, name: str, out: Resolution, walk_bases: bool) -> list[int]:
        """A class member by name, looking through resolved bases breadth-first.

        All matches at the nearest depth are returned, so the answer does not
        depend on the order bases were stored in (depth-bounded, cycle-safe).
        """
        return self._cached(("m", class_id, name, walk_bases), out,
                            lambda deps: self._member_uncached(class_id, name, deps, walk_bases))

    def _member_uncached(self, class_id: int, name: str, out: Resolution, walk_bases: bool) -> list[int]:
        seen: set[int] = set()
        frontier = [class_id]
        depth = 0
        while frontier and depth <= _MAX_BASE_DEPTH:
            found: list[int] = []
            next_frontier: list[int] = []
            for cid in frontier:
                if cid in seen:
                    continue
                seen.add(cid)
                info = self.symbols.nodes.get(cid)
                if info is None:
                    continue
                out.deps.add(f"q:{info.qualname}.{name}")
                found.extend(self.symbols.by_qualname.get(f"{info.qualname}.{name}", ()))
                if walk_bases:
                    out.deps.add("b:" + info.qualname)
                    next_frontier.extend(self.symbols.bases.get(cid, ()))
            if found:
                return sorted(set(found))
            frontier = next_frontier
            depth += 1
        return []

    def _guess_attribute(self, name: str, out: Resolution) -> list[tuple[int | str, float]]:
        """The methods or functions a call ``x.name()`` on a receiver of unknown type may mean."""
        found = self._global(name, _ATTRIBUTE_KINDS, out)
        if name in _BUILTIN_METHODS:
            return [(i, min(conf, Confidence.AMBIGUOUS)) for i, conf in found]
        return found

    def _global(self, name: str, kinds: frozenset[str], out: Resolution) -> list[tuple[int | str, float]]:
        """The only (or one of few) definitions of a name anywhere: a guess, with a confidence to match."""
        key = GLOBAL_KEYS[kinds]
        dep = f"g:{name}:{key}"
        out.deps.add(dep)
        answer = self._globals.get(dep)  # the same few names are guessed in every file
        if answer is None:
            found = sorted(global_candidates(self.symbols, name, key)[0])
            if len(found) == 1:
                answer = [(found[0], Confidence.GLOBAL_UNIQUE)]
            else:
                answer = [(i, Confidence.AMBIGUOUS) for i in found]
            if len(self._globals) >= _MEMO_LIMIT:
                self._globals.clear()
            self._globals[dep] = answer
        return answer


class _FileScope:
    """Name lookup inside one file: nested definitions, imports per scope, star imports."""

    __slots__ = ("facts", "_children", "_imports", "_stars", "_chains")

    def __init__(self, facts: FileFacts) -> None:
        self.facts = facts
        self._chains: dict[int, list[int]] = {}  # every reference of a scope walks the same chain
        self._children: dict[int, dict[str, int]] = {}
        for index, parent in enumerate(facts.def_parents):
            self._children.setdefault(parent, {})[facts.def_names[index]] = index
        self._imports: dict[int, dict[str, tuple[str, str | None]]] = {}
        self._stars: dict[int, list[str]] = {}
        for module, name, alias, _line, where in facts.imports:
            if alias == "*":
                self._stars.setdefault(where, []).append(module)
            else:
                self._imports.setdefault(where, {})[alias] = (module, name)

    def chain(self, where: int) -> list[int]:
        """Scopes visible from ``where``, innermost first; class bodies only from themselves."""
        out = self._chains.get(where)
        if out is None:
            out = self._chains[where] = self._chain(where)
        return out

    def _chain(self, where: int) -> list[int]:
        out = [where]
        parents = self.facts.def_parents
        kinds = self.facts.def_kinds
        current = where
        while current != -1:
            current = parents[current]
            if current == -1 or kinds[current] != "class":
                out.append(current)
        return out

    def local(self, name: str, where: int) -> int | None:
        children = self._children
        for scope in self.chain(where):
            names = children.get(scope)
            if names is not None:
                index = names.get(name)
                if index is not None:
                    return index
        return None

    def imported(self, name: str, where: int) -> tuple[str, str | None] | None:
        imports = self._imports
        for scope in self.chain(where):
            names = imports.get(scope)
            if names is not None:
                bound = names.get(name)
                if bound is not None:
                    return bound
        return None

    def star_modules(self, where: int) -> list[str]:
        if not self._stars:  # most files have no star import
            return []
        return [m for scope in self.chain(where) for m in self._stars.get(scope, ())]

    def enclosing_class(self, where: int) -> int | None:
        current = where
        while current != -1:
            if self.facts.def_kinds[current] == "class":
                return current
            current = self.facts.def_parents[current]
        return None


def _strip_test(name: str) -> str:
    for prefix in _TEST_PREFIXES:
        if name.startswith(prefix):
            return name[len(prefix):].lstrip("_")
    return name



def global_candidates(symbols: Symbols, name: str, key: str) -> tuple[list[int], bool]:
    """The answer of a global lookup: the definitions of ``name`` of the key's kinds if 1 to 3 of
    them, and whether there were too many to say."""
    kinds, skip_tests = _KINDS_BY_KEY[key]
    nodes = symbols.nodes
    found = [i for i in symbols.by_name.get(name, ())
             if nodes[i].kind in kinds and not (skip_tests and nodes[i].in_test) and not _nested(nodes, i)]
    return (found, False) if len(found) <= _MAX_AMBIGUOUS else ([], True)


def _nested(nodes: dict[int, NodeInfo], node_id: int) -> bool:
    """A definition inside a function: its name is local there, no other code can call it by name."""
    parent = nodes[node_id].parent
    return parent is not None and parent in nodes and nodes[parent].kind in _FUNCTION_KINDS


_MANY = ("<many>",)


def global_answers(symbols: Symbols, names) -> dict[str, tuple[str, ...]]:
    """``g:`` dependency keys of ``names`` with their current answers (as qualified names, id-free)."""
    out: dict[str, frozenset[str]] = {}
    for name in names:
        for key in _KINDS_BY_KEY:
            found, many = global_candidates(symbols, name, key)
            # A sorted tuple, not a set: a second definition with the same name changes the answer.
            out[f"g:{name}:{key}"] = _MANY if many else tuple(sorted(symbols.nodes[i].qualname for i in found))
    return out
