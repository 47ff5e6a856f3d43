"""Domain types shared across the pipeline stages.

Every stage (walk -> parse -> resolve -> store -> search -> pack) passes these
frozen, slotted dataclasses around, so a reader can follow the data flow of
DESIGN.md by following the types.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import NamedTuple


# --------------------------------------------------------------------------- #
# Graph vocabulary
# --------------------------------------------------------------------------- #

class NodeKind(str, Enum):
    """What a graph node stands for."""

    MODULE = "module"
    CLASS = "class"
    FUNCTION = "function"
    METHOD = "method"
    TEST = "test"
    LIBRARY = "library"


class EdgeKind(str, Enum):
    """A link stored once, from ``src`` to ``dst``; its inverse is a lookup by ``dst``."""

    CONTAINS = "contains"
    IMPORTS = "imports"
    CALLS = "calls"
    INHERITS = "inherits"
    TESTS = "tests"
    DEPENDS_ON = "depends_on"


#: The name of each edge kind read backwards (from ``dst`` to ``src``).
INVERSE: dict[str, str] = {
    "contains": "belongs_to",
    "imports": "imported_by",
    "calls": "called_by",
    "inherits": "inherited_by",
    "tests": "tested_by",
    "depends_on": "used_by",
}
#: Every link name a user may ask for, mapped to (stored kind, direction).
LINK_NAMES: dict[str, tuple[str, str]] = {
    **{k: (k, "out") for k in INVERSE},
    **{v: (k, "in") for k, v in INVERSE.items()},
}


class Confidence:
    """How sure a resolved edge is; higher is surer (DESIGN.md: imports > module > global)."""

    STRUCTURAL = 1.0  # containment, and import statements naming a workspace module
    IMPORT = 0.95  # a name resolved through the file's own imports
    SAME_MODULE = 0.85  # a name defined in the same module / class
    GLOBAL_UNIQUE = 0.6  # the only definition of that name in the workspace
    CONVENTION = 0.5  # test naming convention (test_foo -> foo)
    AMBIGUOUS = 0.3  # one of a few definitions sharing the name


# --------------------------------------------------------------------------- #
# Walk
# --------------------------------------------------------------------------- #

class SkipReason(str, Enum):
    """Why the workspace walk left a file out of the index."""

    IGNORED = "ignored"  # .gitignore / .codeaheadignore / default excludes
    TOO_LARGE = "too_large"
    BINARY = "binary"
    NOT_UTF8 = "not_utf8"
    UNREADABLE = "unreadable"
    SYMLINK_LOOP = "symlink_loop"
    VANISHED = "vanished"  # deleted between listing and reading
    SYNTAX_ERROR = "syntax_error"  # indexed partially: tree-sitter recovered
    UNSUPPORTED = "unsupported"  # no extractor for this language


@dataclass(frozen=True, slots=True)
class SourceFile:
    """A file the walk accepted: path relative to the workspace root, POSIX separators."""

    path: str
    size: int
    mtime: float
    language: str  # "python"


@dataclass(frozen=True, slots=True)
class Skipped:
    """A file the walk (or the parser) left out, with the reason."""

    path: str
    reason: SkipReason
    detail: str = ""


# --------------------------------------------------------------------------- #
# Parse: what an extractor reads out of one file, before resolution
# --------------------------------------------------------------------------- #

@dataclass(frozen=True, slots=True)
class Definition:
    """A class, function, method or test found in a file.

    ``parent`` is the index of the enclosing definition in ``ParsedFile.definitions``
    (``-1`` for module level). ``local_name`` is the dotted name inside the module
    (``Outer.method``). Lines are 1-based and inclusive.
    """

    kind: NodeKind
    name: str
    local_name: str
    parent: int
    start_line: int
    end_line: int
    signature: str  # e.g. "def fetch(url: str, *, timeout: float = 5) -> bytes"
    doc: str  # first line of the docstring, "" if none
    bases: tuple[str, ...] = ()  # raw dotted base-class expressions, classes only
    decorators: tuple[str, ...] = ()  # raw dotted decorator names
    is_async: bool = False
    terms: str = ""  # code-aware search terms of the node's own text (see indexer.terms)
    #: pytest fixtures a test or fixture asks for: its parameters and ``usefixtures`` marks (``indexer.parse.python``)
    fixtures: tuple[str, ...] = ()
    #: the name a pytest fixture is requested by (``@pytest.fixture(name=...)``, else its own), "" for no fixture
    fixture_name: str = ""


@dataclass(frozen=True, slots=True)
class Import:
    """One imported name. ``module`` is absolute when ``level == 0``.

    ``import a.b as c``        -> Import(module="a.b", name=None, alias="c")
    ``import a.b``             -> Import(module="a.b", name=None, alias="a")  (binds ``a``)
    ``from .x import y as z``  -> Import(module="x", name="y", alias="z", level=1)
    ``from m import *``        -> Import(module="m", name="*", alias="*")
    ``scope`` is the index of the enclosing definition (-1 = module level).
    """

    module: str
    name: str | None
    alias: str
    level: int
    line: int
    scope: int = -1


class Reference(NamedTuple):
    """A use of a name that may resolve to a definition elsewhere.

    ``kind`` is "call" (``a.b.c(...)`` gives target "a.b.c") or "name" (a bare
    identifier or attribute chain used without a call, e.g. passed as a callback).
    ``scope`` is the index of the enclosing definition (-1 = module level).
    A named tuple, not a dataclass: a large project has hundreds of thousands, a frozen
    dataclass takes twice as long to make, and the resolution facts store them as tuples.
    """

    kind: str
    target: str
    line: int
    scope: int


@dataclass(frozen=True, slots=True)
class ParsedFile:
    """Everything the extractor found in one file."""

    path: str
    language: str
    lines: int
    doc: str  # first line of the module docstring
    module_terms: str  # search terms of module-level code (outside definitions)
    definitions: tuple[Definition, ...]
    imports: tuple[Import, ...]
    references: tuple[Reference, ...]
    has_errors: bool = False  # tree-sitter recovered from a syntax error


# --------------------------------------------------------------------------- #
# Graph as stored
# --------------------------------------------------------------------------- #

@dataclass(frozen=True, slots=True)
class Node:
    """A stored graph node. ``path`` is None for library nodes."""

    id: int
    kind: NodeKind
    name: str
    qualname: str  # dotted: package.module.Class.method
    path: str | None
    start_line: int
    end_line: int
    signature: str = ""
    doc: str = ""

    @property
    def location(self) -> str:
        """``path:start-end``, the form an agent can cite."""
        if self.path is None:
            return self.qualname
        return f"{self.path}:{self.start_line}-{self.end_line}"


@dataclass(frozen=True, slots=True)
class Link:
    """One edge seen from a node: ``name`` is the kind read in this direction."""

    name: str  # e.g. "calls" or "called_by"
    node: Node
    confidence: float
    depth: int = 1
    via: int | None = None  # id of the node this link was reached from


@dataclass(frozen=True, slots=True)
class IndexStats:
    """What one ``index()`` pass did."""

    files_seen: int
    files_parsed: int
    files_deleted: int
    files_unchanged: int
    seconds: float
    nodes_by_kind: dict[str, int] = field(default_factory=dict)
    edges_by_kind: dict[str, int] = field(default_factory=dict)
    skipped_by_reason: dict[str, int] = field(default_factory=dict)
    generation: int = 0
    changed_paths: tuple[str, ...] = ()  # files parsed anew or deleted by this pass
    relinked_paths: tuple[str, ...] = ()  # files whose links (not bytes) changed: their versions were raised


# --------------------------------------------------------------------------- #
# Context packing
# --------------------------------------------------------------------------- #

class Tier(int, Enum):
    """Packing priority: lower value is packed first and never dropped for a higher one."""

    CRITICAL = 0
    HIGH = 1
    MEDIUM = 2
    LOW = 3


#: Levels of detail, richest first. "full" = L4 code, "summary" = L3, "module" = L2.
LEVELS: tuple[str, ...] = ("full", "summary", "signature", "module")


class Rendering:
    """One way to show a candidate: its level (one of LEVELS) and the body text (without header).

    The text is given, or made on first use by ``make``: a summary costs several queries and
    most candidates are packed at a richer level or not at all, so only the texts the packer
    reaches are ever built. ``max_tokens`` offers the level only while its block costs at most
    that many tokens (e.g. a long body is shown as its summary rather than crowd out the rest).
    """

    __slots__ = ("level", "_text", "_make", "max_tokens")

    def __init__(self, level: str, text: str | None = None, *, make: Callable[[], str] | None = None,
                 max_tokens: int | None = None) -> None:
        if (text is None) == (make is None):
            raise TypeError("a Rendering takes its text or a function that makes it, exactly one")
        self.level = level
        self._text = text
        self._make = make
        self.max_tokens = max_tokens

    @property
    def text(self) -> str:
        if self._text is None:
            self._text = self._make()
            self._make = None
        return self._text

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Rendering):
            return NotImplemented
        return (self.level, self.text) == (other.level, other.text)

    def __hash__(self) -> int:
        return hash((self.level, self.text))

    def __repr__(self) -> str:
        return f"Rendering({self.level!r}, {self.text!r})"


@dataclass(frozen=True, slots=True)
class Candidate:
    """Something the packer may put in the context, offered at one or more levels.

    ``renderings`` are ordered richest first; the packer uses the first that fits.
    ``key`` is unique within one packing (e.g. "node:42", "task:T1", "error:T1").
    """

    key: str
    tier: Tier
    score: float
    kind: str
    name: str
    why: str
    renderings: tuple[Rendering, ...]
    path: str | None = None
    start_line: int = 0
    end_line: int = 0


@dataclass(frozen=True, slots=True)
class PackedItem:
    """A candidate as packed: the level chosen and the tokens its rendered block costs."""

    key: str
    tier: Tier
    level: str
    tokens: int
    score: float
    kind: str
    name: str
    why: str
    path: str | None
    start_line: int
    end_line: int

    def to_json(self) -> dict:
        """The item as the ``context --json`` / MCP answer shows it."""
        return {
            "path": self.path,
            "start_line": self.start_line,
            "end_line": self.end_line,
            "name": self.name,
            "kind": self.kind,
            "tier": self.tier.name,
            "level": self.level,
            "tokens": self.tokens,
            "score": round(self.score, 4),
            "why": self.why,
        }


@dataclass(frozen=True, slots=True)
class Dropped:
    """A candidate left out of the context, and why."""

    key: str
    tier: Tier
    name: str
    path: str | None
    reason: str  # e.g. "budget"

    def to_json(self) -> dict:
        return {"name": self.name, "path": self.path, "tier": self.tier.name, "reason": self.reason}


@dataclass(frozen=True, slots=True)
class PackedContext:
    """The packer's answer: ``tokens`` is counted on ``text`` itself and is <= ``budget``."""

    text: str
    tokens: int
    budget: int
    items: tuple[PackedItem, ...]
    dropped: tuple[Dropped, ...]

    def to_json(self) -> dict:
        return {
            "text": self.text,
            "tokens": self.tokens,
            "budget": self.budget,
            "items": [i.to_json() for i in self.items],
            "dropped": [d.to_json() for d in self.dropped],
        }

    @classmethod
    def from_json(cls, data: dict) -> "PackedContext":
        """The inverse of ``to_json`` (a cached answer); item keys become ``path:start`` or the name."""
        def key(d: dict) -> str:
            return f"{d['path']}:{d.get('start_line', 0)}" if d.get("path") else d["name"]

        items = tuple(PackedItem(key=key(i), tier=Tier[i["tier"]], level=i["level"], tokens=i["tokens"],
                                 score=i["score"], kind=i["kind"], name=i["name"], why=i["why"], path=i["path"],
                                 start_line=i["start_line"], end_line=i["end_line"]) for i in data["items"])
        dropped = tuple(Dropped(key=key(d), tier=Tier[d["tier"]], name=d["name"], path=d["path"],
                                reason=d["reason"]) for d in data["dropped"])
        return cls(text=data["text"], tokens=data["tokens"], budget=data["budget"], items=items, dropped=dropped)


# --------------------------------------------------------------------------- #
# Search
# --------------------------------------------------------------------------- #

@dataclass(frozen=True, slots=True)
class SearchHit:
    """A ranked code location; ``why`` names the signals that put it there."""

    node: Node
    score: float
    tokens: int = 0
    why: str = ""

    def to_json(self) -> dict:
        n = self.node
        return {
            "path": n.path,
            "start_line": n.start_line,
            "end_line": n.end_line,
            "kind": n.kind.value,
            "name": n.qualname,
            "score": round(self.score, 4),
            "tokens": self.tokens,
            "summary": n.signature + (f"  # {n.doc}" if n.doc else ""),
            "why": self.why,
        }


def vector_only_note(hits: Sequence[SearchHit]) -> str | None:
    """A note for hits none of which matched a word of the query: only the embedder's nearest neighbours, which a
    reader would otherwise take for matches (``search zzzqqq`` listed ten confident-looking rows)."""
    if hits and not any("bm25" in h.why for h in hits):
        return "no word of the query is in the index: these hits are only the nearest by vector similarity"
    return None
