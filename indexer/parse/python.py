"""Python extractor: one tree-sitter parse and one query pass per file into a ParsedFile.

The grammar, parser and query are compiled once per process (``grammar()``); the query
runs in C and Python only visits the nodes it captured (definitions, imports, calls,
value names), never the whole tree.
"""

from __future__ import annotations

import re
import threading
from bisect import bisect_right
from dataclasses import dataclass, field
from functools import cache
from itertools import starmap
from operator import attrgetter

import tree_sitter_python
from tree_sitter import Language, Node, Parser, Query, QueryCursor, Tree

from indexer.terms import terms_text
from indexer.testpaths import is_test_path
from indexer.types import Definition, Import, NodeKind, ParsedFile, Reference

LANGUAGE = "python"
#: Longest signature kept; longer ones are cut and end with an ellipsis.
MAX_SIGNATURE = 300
_ELLIPSIS = "..."
_TEST_PREFIX = "test"
_UNITTEST_BASE_SUFFIX = "TestCase"
_SELF_NAMES = frozenset({"self", "cls"})
#: Last dotted part of a decorator that makes a function a pytest fixture, and of the mark that asks for some.
_FIXTURE_DECORATORS = frozenset({"fixture", "yield_fixture"})
_USEFIXTURES = "usefixtures"
_PARAMETRIZE = "parametrize"
_PYTEST_DECORATORS = _FIXTURE_DECORATORS | {_USEFIXTURES, _PARAMETRIZE}

# Captures: @def = class/function, @import = any import statement, @call = a callee
# that is an identifier or attribute chain (a bare decorator is one too: Python calls it with the
# definition, in the enclosing scope), @name = an identifier or attribute chain
# used as a value (call argument or assignment right-hand side). Base classes are
# `argument_list`s too, so arguments are only taken from calls.
_QUERY = """
(function_definition) @def
(class_definition) @def
(import_statement) @import
(import_from_statement) @import
(future_import_statement) @import
(call function: [(identifier) (attribute)] @call)
(decorator [(identifier) (attribute)] @call)
(call arguments: (argument_list [(identifier) (attribute)] @name))
(call arguments: (argument_list (keyword_argument value: [(identifier) (attribute)] @name)))
(assignment right: [(identifier) (attribute)] @name)
"""

# An ASCII attribute chain written without spaces (`a.b.c`), the common case read without a tree walk.
_DOTTED = re.compile(rb"[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*")
_SPACE = re.compile(r"\s+")
#: Header fields of (function, class) definitions, last in the grammar first.
_HEADER_FIELDS_LAST_FIRST = (("return_type", "parameters", "type_parameters", "name"),
                             ("superclasses", "type_parameters", "name"))
_AFTER_OPEN = re.compile(r"([(\[]) ")
_BEFORE_CLOSE = re.compile(r"(?:, | )([)\]])")


@dataclass(frozen=True, slots=True)
class _Grammar:
    """The compiled tree-sitter objects, shared by every file this process parses."""

    language: Language
    query: Query
    parsers: threading.local = field(default_factory=threading.local)

    def parser(self) -> Parser:
        """This thread's parser (a Parser must not be shared between threads)."""
        parser = getattr(self.parsers, "parser", None)
        if parser is None:
            parser = self.parsers.parser = Parser(self.language)
        return parser


@cache
def grammar() -> _Grammar:
    """Compile the Python grammar and the extraction query once per process."""
    language = Language(tree_sitter_python.language())
    return _Grammar(language=language, query=Query(language, _QUERY))


#: Source bytes whose trees ``RecentTrees`` keeps (a tree costs ~20 bytes per source byte: ~10 MB).
RECENT_TREE_BYTES = 512 * 1024


class RecentTrees:
    """The last trees this process parsed, by path, so a file saved again is parsed incrementally.

    Tree-sitter re-parses an edited tree by reusing every subtree the edit did not touch, in well
    under a millisecond for a line added to Django's 117 KB ``query.py`` instead of ~9 ms, and gives
    the tree a fresh parse gives (checked on thousands of random edits of Django's files, broken
    code included). The edit is found by comparing the old bytes with the new ones, so the trees
    never need to know what the disk or the index holds. Only the index writer's own parses keep
    trees; a pool worker never sees a path twice.
    """

    def __init__(self, max_bytes: int = RECENT_TREE_BYTES) -> None:
        self.max_bytes = max_bytes
        self._trees: dict[str, tuple[bytes, Tree, dict[str, str]]] = {}  # oldest first
        self._lock = threading.Lock()

    def parse(self, parser: Parser, path: str, source: bytes) -> tuple[Tree, dict[str, str]]:
        """The tree of ``source``, re-parsed from ``path``'s last tree when there is one, and the search
        terms of that last version's pieces of text (most pieces of an edited file are unchanged)."""
        with self._lock:
            last = self._trees.pop(path, None)
        if last is None:
            return parser.parse(source), {}
        old_source, old_tree, terms = last
        _describe_edit(old_tree, old_source, source)
        return parser.parse(source, old_tree), terms

    def keep(self, path: str, source: bytes, tree: Tree, terms: dict[str, str]) -> None:
        """Remember ``path``'s newest tree and its pieces' terms, forgetting the oldest past ``max_bytes``."""
        if len(source) > self.max_bytes:
            return
        with self._lock:
            self._trees[path] = (source, tree, terms)
            total = sum(len(kept[0]) for kept in self._trees.values())
            while total > self.max_bytes:
                oldest = next(iter(self._trees))
                total -= len(self._trees.pop(oldest)[0])

    def __contains__(self, path: str) -> bool:
        return path in self._trees


def _describe_edit(tree: Tree, old: bytes, new: bytes) -> None:
    """Tell ``tree`` (of ``old``) that one span was replaced to give ``new``: the bytes between the common ends."""
    start = _common_prefix(old, new)
    end = _common_prefix(old[::-1], new[::-1])
    end = min(end, len(old) - start, len(new) - start)  # the two ends may not overlap
    old_end, new_end = len(old) - end, len(new) - end
    tree.edit(start_byte=start, old_end_byte=old_end, new_end_byte=new_end, start_point=_point(old, start),
              old_end_point=_point(old, old_end), new_end_point=_point(new, new_end))


def _common_prefix(a: bytes, b: bytes) -> int:
    """Length of the common prefix of two byte strings (a binary search over C-level comparisons)."""
    low, high = 0, min(len(a), len(b))
    while low < high:
        mid = (low + high + 1) // 2
        if a[:mid] == b[:mid]:
            low = mid
        else:
            high = mid - 1
    return low


def _point(data: bytes, offset: int) -> tuple[int, int]:
    """Tree-sitter's (row, byte column) of ``offset`` in ``data``."""
    return data.count(b"\n", 0, offset), offset - (data.rfind(b"\n", 0, offset) + 1)


@dataclass(slots=True)
class _Def:
    """A definition while the file is being read; becomes a ``Definition``."""

    node: Node
    outer: Node  # the decorated_definition around ``node``, or ``node`` itself
    body: Node | None  # read once: a def's docstring and its parent's terms both need it
    end: int  # end byte of ``node``
    parent: int
    name: str
    local_name: str
    is_class: bool
    bases: tuple[str, ...] = ()
    children: list[int] = field(default_factory=list)


def parse_python(path: str, source: bytes, trees: RecentTrees | None = None) -> ParsedFile:
    """Read the definitions, imports and references of one Python file (incrementally, given ``trees``)."""
    g = grammar()
    if trees is not None:
        tree, last_terms = trees.parse(g.parser(), path, source)
        terms = _PieceTerms(last_terms)
    else:  # nothing will parse this file again here (a pool worker): plain terms_text
        tree, terms = g.parser().parse(source), None
    root = tree.root_node
    caps = {name: _in_document_order(nodes) for name, nodes in QueryCursor(g.query).captures(root).items()}

    defs = _collect_defs(caps.get("def", []), source)
    scopes = _Scopes(defs)
    test_file = is_test_path(path)
    definitions = tuple(_definition(d, defs, source, test_file, terms) for d in defs)
    imports = tuple(imp for node in caps.get("import", []) for imp in _imports(node, scopes.of(node)))
    references = _references(caps, scopes, defs, source)
    module_terms = _terms(source, 0, len(source), [d.outer for d in defs if d.parent < 0], terms)
    if trees is not None:
        trees.keep(path, source, tree, terms.made)

    return ParsedFile(
        path=path,
        language=LANGUAGE,
        lines=_line_count(source),
        doc=_docstring(root, source),
        module_terms=module_terms,
        definitions=definitions,
        imports=imports,
        references=references,
        has_errors=root.has_error,
    )


# --------------------------------------------------------------------------- #
# Definitions
# --------------------------------------------------------------------------- #

def _collect_defs(nodes: list[Node], source: bytes) -> list[_Def]:
    """Definitions (given in document order), each knowing its parent by byte-range nesting."""
    defs: list[_Def] = []
    stack: list[int] = []
    for node in nodes:
        start = node.start_byte
        while stack and defs[stack[-1]].end <= start:
            stack.pop()
        parent = stack[-1] if stack else -1
        name_node = node.child_by_field_name("name")
        name = _text(source, name_node) if name_node is not None else ""
        around = node.parent
        outer = around if around is not None and around.type == "decorated_definition" else node
        is_class = node.type == "class_definition"
        d = _Def(
            node=node,
            outer=outer,
            body=node.child_by_field_name("body"),
            end=node.end_byte,
            parent=parent,
            name=name,
            local_name=f"{defs[parent].local_name}.{name}" if parent >= 0 else name,
            is_class=is_class,
            bases=_bases(node, source) if is_class else (),
        )
        if parent >= 0:
            defs[parent].children.append(len(defs))
        stack.append(len(defs))
        defs.append(d)
    return defs


def _definition(d: _Def, defs: list[_Def], source: bytes, test_file: bool,
                terms: "_PieceTerms | None") -> Definition:
    """The ``Definition`` of one collected def."""
    node = d.node
    first = node.child(0)
    kind = _kind(d, defs, test_file)
    decorators = _decorators(d.outer, source)
    pytest_marks = any(n.rsplit(".", 1)[-1] in _PYTEST_DECORATORS for n in decorators)  # not @property's
    registered, marked, parametrized = _pytest_decorators(d.outer, source) if pytest_marks else (None, (), ())
    asks_fixtures = kind is NodeKind.TEST or registered is not None
    return Definition(
        kind=kind,
        name=d.name,
        local_name=d.local_name,
        parent=d.parent,
        start_line=d.outer.start_point.row + 1,
        end_line=node.end_point.row + 1,
        signature=_signature(node, source),
        doc=_docstring(d.body, source),
        bases=d.bases,
        decorators=decorators,
        is_async=not d.is_class and first is not None and first.type == "async",
        terms=_terms(source, d.outer.start_byte, d.end, [defs[c].body for c in d.children], terms),
        fixtures=_requested_fixtures(d, defs, decorators, marked, parametrized, source) if asks_fixtures else (),
        fixture_name=(registered or d.name) if registered is not None else "",
    )


def _requested_fixtures(d: _Def, defs: list[_Def], decorators: tuple[str, ...], marked: tuple[str, ...],
                        parametrized: tuple[str, ...], source: bytes) -> tuple[str, ...]:
    """The fixtures a test or fixture asks for, as pytest reads them: every parameter without a default
    (``*args`` and ``**kwargs`` aside, and a method's first one but a staticmethod's), then the names of the
    ``usefixtures`` marks on it and on the classes around it; less the arguments a ``parametrize`` mark on
    them fills directly (not ``indirect``), which no fixture provides."""
    names: list[str] = []
    params = d.node.child_by_field_name("parameters")
    for p in params.named_children if params is not None else ():
        if p.type == "identifier":
            names.append(_plain(p))
        elif p.type == "typed_parameter":
            inner = p.named_children[0] if p.named_child_count else None
            names.append(_plain(inner) if inner is not None and inner.type == "identifier" else "")
        else:  # a default, a splat, or a separator: never a fixture, and the order still counts
            names.append("")
    bound = d.parent >= 0 and defs[d.parent].is_class and "staticmethod" not in decorators
    if bound and names:
        names.pop(0)
    names += marked
    filled = set(parametrized)
    parent = d.parent
    while parent >= 0:
        if defs[parent].is_class and defs[parent].outer.type == "decorated_definition":
            _, class_marked, class_filled = _pytest_decorators(defs[parent].outer, source)
            names += class_marked
            filled.update(class_filled)
        parent = defs[parent].parent
    return tuple(dict.fromkeys(n for n in names if n and n not in filled))


def _pytest_decorators(outer: Node, source: bytes) -> tuple[str | None, tuple[str, ...], tuple[str, ...]]:
    """(the name a fixture decorator registers the definition under, "" for its own name, None when it is no
    fixture; the fixtures its ``@pytest.mark.usefixtures(...)`` marks ask for; the arguments its
    ``@pytest.mark.parametrize("a, b", ...)`` marks fill directly)."""
    registered: str | None = None
    marked: list[str] = []
    filled: list[str] = []
    for dec in outer.named_children if outer.type == "decorated_definition" else ():
        if dec.type != "decorator":
            continue
        expr = next((c for c in dec.named_children if c.type != "comment"), None)
        call = expr if expr is not None and expr.type == "call" else None
        fn = call.child_by_field_name("function") if call is not None else expr
        name = _dotted(fn, source) if fn is not None else None
        last = name.rsplit(".", 1)[-1] if name else ""
        if last in _FIXTURE_DECORATORS:
            registered = _string_value(_keyword_argument(call, "name")) if call is not None else ""
        elif last == _USEFIXTURES and call is not None:
            arguments = call.child_by_field_name("arguments")
            marked += (_string_value(a) for a in (arguments.named_children if arguments is not None else ()))
        elif last == _PARAMETRIZE and call is not None and _keyword_argument(call, "indirect") is None:
            arguments = call.child_by_field_name("arguments")
            first = arguments.named_children[0] if arguments is not None and arguments.named_child_count else None
            if first is not None and first.type in ("list", "tuple"):
                filled += (_string_value(n) for n in first.named_children)
            else:
                filled += (n.strip() for n in _string_value(first).split(","))
    return registered, tuple(m for m in marked if m), tuple(f for f in filled if f)


def _keyword_argument(call: Node, keyword: str) -> Node | None:
    """The value passed as ``keyword=`` to ``call``, else None."""
    arguments = call.child_by_field_name("arguments")
    for arg in arguments.named_children if arguments is not None else ():
        if arg.type == "keyword_argument" and _plain(arg.child_by_field_name("name")) == keyword:
            return arg.child_by_field_name("value")
    return None


def _string_value(node: Node | None) -> str:
    """The text of a plain string literal (no f-string parts), else ""."""
    if node is None or node.type != "string" or any(c.type == "interpolation" for c in node.named_children):
        return ""
    return "".join(c.text.decode("utf-8", "replace") for c in node.named_children if c.type == "string_content")


def _kind(d: _Def, defs: list[_Def], test_file: bool) -> NodeKind:
    """CLASS, FUNCTION, METHOD or TEST, by nesting and pytest/unittest naming."""
    if d.is_class:
        return NodeKind.CLASS
    is_test_name = d.name.startswith(_TEST_PREFIX)
    if d.parent < 0:
        return NodeKind.TEST if test_file and is_test_name else NodeKind.FUNCTION
    owner = defs[d.parent]
    if not owner.is_class:
        return NodeKind.FUNCTION
    # In a test file any class's test methods are tests: unittest collects subclasses of a project's own
    # base (Django's ``OperationTests(OperationTestBase)``), whose name says nothing.
    if is_test_name and (test_file or any(b.endswith(_UNITTEST_BASE_SUFFIX) for b in owner.bases)):
        return NodeKind.TEST
    return NodeKind.METHOD


def _signature(node: Node, source: bytes) -> str:
    """The def/class header on one line, without the colon, capped at MAX_SIGNATURE."""
    end = node.start_byte
    # The grammar orders the header fields, so the last one present ends the header.
    for fld in _HEADER_FIELDS_LAST_FIRST[node.type == "class_definition"]:
        part = node.child_by_field_name(fld)
        if part is not None:
            end = max(end, part.end_byte)
            break
    raw = source[node.start_byte:end]
    if b"#" in raw:
        raw = _without_comments(node, raw, end)
    text = " ".join(raw.decode("utf-8", "replace").split())  # str.split's whitespace is re's \s
    if "( " in text or "[ " in text:
        text = _AFTER_OPEN.sub(r"\1", text)
    if " )" in text or " ]" in text:
        text = _BEFORE_CLOSE.sub(r"\1", text)
    if len(text) > MAX_SIGNATURE:
        text = text[: MAX_SIGNATURE - len(_ELLIPSIS)] + _ELLIPSIS
    return text


def _without_comments(node: Node, raw: bytes, end: int) -> bytes:
    """``raw`` (the header of ``node``) with its comment nodes cut out."""
    base = node.start_byte
    cuts: list[tuple[int, int]] = []
    pending = [c for c in node.children if c.start_byte < end]
    while pending:
        child = pending.pop()
        if child.type == "comment":
            cuts.append((child.start_byte - base, child.end_byte - base))
        elif child.type != "block":
            pending.extend(child.children)
    out, pos = [], 0
    for start, stop in sorted(cuts):
        out.append(raw[pos:start])
        pos = stop
    out.append(raw[pos:])
    return b" ".join(out)


def _bases(node: Node, source: bytes) -> tuple[str, ...]:
    """Dotted superclass expressions; ``Generic[T]`` gives "Generic", keywords are skipped."""
    supers = node.child_by_field_name("superclasses")
    if supers is None:
        return ()
    out: list[str] = []
    for arg in supers.named_children:
        if arg.type == "subscript":
            arg = arg.child_by_field_name("value")
        if arg is not None and arg.type in ("identifier", "attribute"):
            dotted = _dotted(arg, source)
            if dotted:
                out.append(dotted)
    return tuple(out)


def _decorators(outer: Node, source: bytes) -> tuple[str, ...]:
    """Decorator names without their arguments: ``@app.route("/")`` gives "app.route"."""
    if outer.type != "decorated_definition":
        return ()
    out: list[str] = []
    for dec in outer.named_children:
        if dec.type != "decorator":
            continue
        expr = next((c for c in dec.named_children if c.type != "comment"), None)
        if expr is None:
            continue
        if expr.type == "call":
            expr = expr.child_by_field_name("function")
        name = _dotted(expr, source) if expr is not None else None
        out.append(name if name else _SPACE.sub(" ", _text(source, expr or dec)).strip())
    return tuple(out)


def _docstring(body: Node | None, source: bytes) -> str:
    """First non-empty line of the docstring opening ``body`` (module or block), else ""."""
    if body is None:
        return ""
    # Child by child: ``named_children`` would build a node for every statement of the body.
    count, index, first = body.named_child_count, 0, None
    while index < count:
        first = body.named_child(index)
        if first.type != "comment":
            break
        index, first = index + 1, None
    if first is None or first.type != "expression_statement" or first.named_child_count != 1:
        return ""
    string = first.named_child(0)
    if string.type != "string" or string.child_count < 2:
        return ""
    start, end = string.child(0), string.child(string.child_count - 1)
    if start.type != "string_start" or end.type != "string_end":
        return ""
    text = source[start.end_byte:end.start_byte].decode("utf-8", "replace")
    return next((line.strip() for line in text.splitlines() if line.strip()), "")


class _PieceTerms:
    """``terms_text`` of each piece of one file, taking the pieces its last version had from ``last``."""

    def __init__(self, last: dict[str, str]) -> None:
        self.last = last
        self.made: dict[str, str] = {}  # this version's pieces: what the next version may reuse

    def __call__(self, text: str) -> str:
        found = self.last.get(text)
        if found is None:
            found = terms_text(text)
        self.made[text] = found
        return found


def _terms(source: bytes, start: int, end: int, holes: list[Node | None], terms: _PieceTerms | None = None) -> str:
    """Search terms of ``source[start:end]`` with the ``holes`` (nested bodies) left out."""
    pieces: list[bytes] = []
    pos = start
    for hole in holes:
        if hole is None:
            continue
        pieces.append(source[pos:hole.start_byte])
        pos = hole.end_byte
    pieces.append(source[pos:end])
    text = b"\n".join(pieces).decode("utf-8", "replace")
    return terms_text(text) if terms is None else terms(text)


# --------------------------------------------------------------------------- #
# Scopes, imports, references
# --------------------------------------------------------------------------- #

class _Scopes:
    """Finds the innermost definition around a byte offset."""

    def __init__(self, defs: list[_Def]) -> None:
        self._starts = [d.node.start_byte for d in defs]
        self._ends = [d.end for d in defs]
        self._parents = [d.parent for d in defs]

    def of(self, node: Node) -> int:
        """Index of the innermost definition containing ``node``, -1 at module level."""
        return self.at(node.start_byte)

    def at(self, pos: int) -> int:
        """Index of the innermost definition containing byte ``pos``, -1 at module level."""
        i = bisect_right(self._starts, pos) - 1
        # Defs nest properly, so if the last one to start before ``pos`` has ended,
        # the innermost one still open is among its ancestors.
        ends = self._ends
        while i >= 0 and ends[i] <= pos:
            i = self._parents[i]
        return i


def _imports(node: Node, scope: int) -> list[Import]:
    """One ``Import`` per name bound by an import statement."""
    line = node.start_point.row + 1
    if node.type == "import_statement":
        out = []
        for child in node.children_by_field_name("name"):
            if child.type == "aliased_import":
                module = _plain(child.child_by_field_name("name"))
                alias = _plain(child.child_by_field_name("alias"))
            else:
                module = _plain(child)
                alias = module.split(".", 1)[0]
            out.append(Import(module=module, name=None, alias=alias, level=0, line=line, scope=scope))
        return out
    module, level = "__future__", 0
    if node.type == "import_from_statement":
        module, level = _from_module(node.child_by_field_name("module_name"))
    if any(c.type == "wildcard_import" for c in node.children):
        return [Import(module=module, name="*", alias="*", level=level, line=line, scope=scope)]
    out = []
    for child in node.children_by_field_name("name"):
        if child.type == "aliased_import":
            name = _plain(child.child_by_field_name("name"))
            alias = _plain(child.child_by_field_name("alias"))
        else:
            name = alias = _plain(child)
        out.append(Import(module=module, name=name, alias=alias, level=level, line=line, scope=scope))
    return out


def _from_module(node: Node | None) -> tuple[str, int]:
    """(module, level) of a ``from`` clause: ``..pkg.mod`` gives ("pkg.mod", 2)."""
    if node is None:
        return "", 0
    if node.type != "relative_import":
        return _plain(node), 0
    level, module = 0, ""
    for child in node.children:
        if child.type == "import_prefix":
            level = child.text.count(b".")
        elif child.type == "dotted_name":
            module = _plain(child)
    return module, level


def _references(caps: dict[str, list[Node]], scopes: _Scopes, defs: list[_Def],
                source: bytes) -> tuple[Reference, ...]:
    """Calls, then value names, each deduplicated, in document order.

    The hot loop of the extractor (a few hundred thousand captures on a large project): the common
    case, a plain ``a.b.c`` chain, is read straight from the source bytes.
    """
    # (kind, target, line, scope) in Reference's field order; a dict keeps order and dedups.
    found: dict[tuple[str, str, int, int], None] = {}
    scope_at = scopes.at
    plain_chain = _DOTTED.fullmatch
    params = _Params(defs)
    for node in caps.get("call", ()):
        start = node.start_byte
        raw = source[start:node.end_byte]
        target = raw.decode("ascii") if plain_chain(raw) else _callee(node)
        if not target:
            continue
        scope = scope_at(start)
        if "." not in target and target in params.of(scope):
            continue  # a parameter called (a callback): no definition of that name is meant
        found[("call", target, node.start_point[0] + 1, scope)] = None
    for node in caps.get("name", ()):
        start = node.start_byte
        raw = source[start:node.end_byte]
        target = raw.decode("ascii") if plain_chain(raw) else _chain(node)
        if not target:
            continue
        scope = scope_at(start)
        root, dot, _ = target.partition(".")
        if root in params.of(scope) and not (dot and root in _SELF_NAMES):
            continue
        found[("name", target, node.start_point[0] + 1, scope)] = None
    return tuple(starmap(Reference, found))


class _Params:
    """Parameter names visible in a scope (its function and enclosing functions), cached."""

    def __init__(self, defs: list[_Def]) -> None:
        self._defs = defs
        self._cache: dict[int, frozenset[str]] = {-1: frozenset()}

    def of(self, scope: int) -> frozenset[str]:
        """Names bound as parameters in ``scope`` or its enclosing functions."""
        found = self._cache.get(scope)
        if found is None:
            d = self._defs[scope]
            own = frozenset() if d.is_class else _param_names(d.node)
            found = self._cache[scope] = own | self.of(d.parent)
        return found


def _param_names(node: Node) -> frozenset[str]:
    """Names a function binds as parameters."""
    params = node.child_by_field_name("parameters")
    if params is None:
        return frozenset()
    names: set[str] = set()
    for p in params.named_children:
        # default parameters name their identifier; typed and splat ones hold it first.
        target = p.child_by_field_name("name") or p
        while target.type != "identifier" and target.named_child_count:
            target = target.named_children[0]
        if target.type == "identifier":
            names.add(_plain(target))
    return frozenset(names)


#: Receivers whose methods are the built-in types' (``", ".join``, ``[].append``): never a workspace method.
_LITERALS = frozenset({"string", "concatenated_string", "list", "dictionary", "set", "tuple", "integer", "float",
                       "list_comprehension", "dictionary_comprehension", "set_comprehension", "true", "false",
                       "none"})


def _callee(node: Node) -> str | None:
    """Call target that is not a plain chain written without spaces: "super.save", or "?.h" for unknown receivers."""
    chain = _chain(node)
    if chain or node.type != "attribute":
        return chain
    receiver = node.child_by_field_name("object")
    if receiver is not None and receiver.type in _LITERALS:
        return None
    attr = node.child_by_field_name("attribute")
    return f"?.{_plain(attr)}" if attr is not None else None


def _chain(node: Node | None) -> str | None:
    """A name chain read from the tree, possibly rooted at ``super()``; None when unknown."""
    if node is None:
        return None
    if node.type == "identifier":
        return _plain(node)
    if node.type == "call":
        fn = node.child_by_field_name("function")
        return "super" if fn is not None and fn.type == "identifier" and _plain(fn) == "super" else None
    if node.type == "attribute":
        inner = _chain(node.child_by_field_name("object"))
        attr = node.child_by_field_name("attribute")
        return f"{inner}.{_plain(attr)}" if inner and attr is not None else None
    return None


def _dotted(node: Node, source: bytes) -> str | None:
    """``node`` as a dotted name ("a.b.c") when it is an identifier/attribute chain."""
    raw = source[node.start_byte:node.end_byte]
    if _DOTTED.fullmatch(raw):
        return raw.decode("ascii")
    return _chain(node)


def _plain(node: Node | None) -> str:
    """Text of a small node (identifier, dotted name), whitespace removed."""
    if node is None:
        return ""
    return "".join(node.text.decode("utf-8", "replace").split())


def _text(source: bytes, node: Node) -> str:
    """Text of ``node`` decoded leniently."""
    return source[node.start_byte:node.end_byte].decode("utf-8", "replace")


_BY_START = attrgetter("start_byte")
_BY_END = attrgetter("end_byte")


def _in_document_order(nodes: list[Node]) -> list[Node]:
    """By start, the outer node first (tree-sitter's own order varies on ties).

    Two stable sorts on C-level keys instead of one on a Python key function: a third of the cost.
    """
    nodes.sort(key=_BY_END, reverse=True)
    nodes.sort(key=_BY_START)
    return nodes


def _line_count(source: bytes) -> int:
    """Lines in the file; a final line without newline counts."""
    if not source:
        return 0
    return source.count(b"\n") + (0 if source.endswith(b"\n") else 1)
