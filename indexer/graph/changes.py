"""What a set of file changes alters for other files' resolution, as dependency keys.

Node ids survive a re-parse when a definition keeps its kind and qualified
name, so edges from other files into an edited file stay valid. Only these
keys can alter another file's answers (their meaning is in
``indexer.graph.resolve``):

- ``q:`` a (kind, qualified name) that appeared, disappeared or changed its count (duplicates), or a
  module that moved (same name, another path),
- ``i:`` a module whose module-level import table changed,
- ``l:`` / ``t:`` a module last name or top-level package that appeared or disappeared,
- ``g:`` a global lookup whose answer changed (compared before and after the change),
- ``f:`` a pytest fixture name defined, removed or moved (another file, another class).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from indexer.graph.resolve import Symbols, global_answers


@dataclass(slots=True)
class FileShape:
    """The parts of one file's version that others' resolution can see."""

    module: str
    path: str
    nodes: Counter = field(default_factory=Counter)  # (kind, qualname) -> how many
    imports: dict[str, tuple[str, str | None]] = field(default_factory=dict)  # module-level alias table
    fixtures: Counter = field(default_factory=Counter)  # (name, qualname) of each pytest fixture -> how many


def lookup_names(before: Counter, after: Counter) -> set[str]:
    """Names whose global lookups may answer differently once the changed files' nodes are replaced.

    ``before`` and ``after`` count the (kind, qualname, in test) of those files' nodes. A global lookup
    of a name sees the kind, qualified name and test flag of every node of that name, and nodes of
    unchanged files stay as they were, so only the names of keys whose count changed can answer
    differently. A re-parse that keeps every definition (an edit inside a body) has none to look up.
    """
    return {key[1].rsplit(".", 1)[-1] for key in before.keys() | after.keys() if before[key] != after[key]}


class ChangeTracker:
    """Collects old and new shapes of changed files and the global answers around them."""

    def __init__(self, symbols: Symbols) -> None:
        self.symbols = symbols
        self.old: list[FileShape] = []
        self.new: list[FileShape] = []
        self._names: set[str] = set()
        self._answers_before: dict[str, tuple[str, ...]] = {}
        self._tops_before: set[str] = set()

    def before(self, old: list[FileShape], names: set[str]) -> None:
        """Record the state before any removal: old shapes and the answers of the names that may change."""
        self.old = old
        self._names = set(names)
        self._answers_before = global_answers(self.symbols, self._names)
        self._tops_before = set(self.symbols.top_packages)

    def after(self, new: list[FileShape]) -> set[str]:
        """Keys whose answers may differ now that ``new`` shapes replaced the old ones."""
        self.new = new
        keys: set[str] = set()
        old_nodes: Counter = Counter()
        new_nodes: Counter = Counter()
        for shape in self.old:
            old_nodes.update(shape.nodes)
        for shape in new:
            new_nodes.update(shape.nodes)
        for kind, qualname in {k for k in old_nodes.keys() | new_nodes.keys() if old_nodes[k] != new_nodes[k]}:
            keys.add("q:" + qualname)
            if kind == "module":
                keys.add("l:" + qualname.rsplit(".", 1)[-1])
        # A module that moved keeps its name but not its place: of same-named modules the one with the
        # smallest path is chosen, and a test convention skips modules in test folders.
        old_places = Counter((s.module, s.path) for s in self.old)
        new_places = Counter((s.module, s.path) for s in new)
        for module, _path in (old_places - new_places) + (new_places - old_places):
            keys.update(("q:" + module, "l:" + module.rsplit(".", 1)[-1]))
        old_imports = {s.module: s.imports for s in self.old}
        new_imports = {s.module: s.imports for s in new}
        for module in old_imports.keys() | new_imports.keys():
            if old_imports.get(module, {}) != new_imports.get(module, {}):
                keys.add("i:" + module)
        old_fixtures = Counter((name, qualname, s.path) for s in self.old for name, qualname in s.fixtures.elements())
        new_fixtures = Counter((name, qualname, s.path) for s in new for name, qualname in s.fixtures.elements())
        keys.update("f:" + key[0] for key in (old_fixtures - new_fixtures) + (new_fixtures - old_fixtures))
        keys.update("t:" + t for t in self._tops_before ^ set(self.symbols.top_packages))
        after = global_answers(self.symbols, self._names)
        keys.update(k for k, v in after.items() if self._answers_before.get(k) != v)
        return keys
