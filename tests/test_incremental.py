"""The key property: after any series of edits, an incremental index equals a fresh full index.

A small random package (modules calling each other through every import style,
classes with bases in other modules, pytest fixtures in modules and conftest.py
files, a test file asking for them) is edited step by step. After
each step one long-lived index is brought up to date (by a full walk, or by the
watcher's partial pass over the changed paths) and compared with a brand-new
index of the same tree. Nodes and edges are compared by path, kind and name,
never by id: ids differ between two indexes.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from hypothesis import HealthCheck, Phase, given, note, settings
from hypothesis import strategies as st

from conftest import graph_of, graphs_after, integrity_problems, write_tree
from indexer.graph.resolve import Symbols
from indexer.indexing import load_symbols, snapshot_symbols
from indexer.store import fts_totals
from indexer.workspace import Workspace

#: More examples for a bug hunt: CODEAHEAD_PROPERTY_EXAMPLES=500 python -m pytest tests/test_incremental.py
MAX_EXAMPLES = int(os.environ.get("CODEAHEAD_PROPERTY_EXAMPLES", "30"))
MAX_STEPS = 7
SOURCE_FOLDERS = ("pkg", "pkg/sub", "")
TEST_FOLDER = "tests"
STEMS = ("alpha", "beta", "gamma", "delta", "omega")
TEST_STEMS = ("test_alpha", "test_beta")
# Few names, so definitions collide: bare calls flip between unique, ambiguous and unresolved.
FUNCS = ("run", "load", "save")
CLASSES = ("Base", "Node")
METHODS = ("step", "reset")
TEST_FUNCS = ("test_run", "test_load", "test_step")
TEST_CLASSES = ("TestNode", "TestBase")
LIBRARIES = ("numpy", "json")
#: pytest fixture names: fixtures of these names appear in source modules (plugins), test modules and
#: conftest.py files, and tests and fixtures ask for them.
FIXTURE_NAMES = ("app", "db")
CONFTESTS = ("conftest.py", f"{TEST_FOLDER}/conftest.py")
#: How a call names a workspace target (import style, or none); library calls are drawn apart.
CALL_STYLES = ("from", "alias", "plain", "relative", "bare", "local", "receiver")
METHOD_STYLES = ("self", "super")
BASE_STYLES = ("from", "alias", "same")
#: Fake mtimes step by a second per write, so a coarse-clock filesystem can't hide an edit.
_MTIME_STEP_NS = 1_000_000_000


# --------------------------------------------------------------------------- #
# A model of the tree, rendered to Python source
# --------------------------------------------------------------------------- #

@dataclass
class Call:
    """One call in a body: ``style`` says how the target is imported, ``module`` is its dotted module."""

    style: str
    module: str
    name: str


@dataclass
class Func:
    name: str
    calls: list[Call] = field(default_factory=list)
    asks: list[str] = field(default_factory=list)  # fixtures asked for as parameters


@dataclass
class Klass:
    name: str
    base: Call | None = None
    methods: list[Func] = field(default_factory=list)


@dataclass
class Module:
    funcs: list[Func] = field(default_factory=list)
    classes: list[Klass] = field(default_factory=list)
    padding: int = 0  # comment lines on top: shifts every line number
    fixtures: list[Func] = field(default_factory=list)  # @pytest.fixture functions


@dataclass
class Tree:
    modules: dict[str, Module] = field(default_factory=dict)  # path -> module
    inits: set[str] = field(default_factory=set)  # folders holding an __init__.py
    reexport: Call | None = None  # pkg/__init__.py: from .x import name

    def render(self) -> dict[str, str]:
        files = {path: render_module(path, module) for path, module in self.modules.items()}
        for folder in self.inits:
            text = ""
            if folder == "pkg" and self.reexport is not None:
                text = f"from .{self.reexport.module.rsplit('.', 1)[-1]} import {self.reexport.name}\n"
            files[f"{folder}/__init__.py"] = text
        return files


def dotted(path: str) -> str:
    """The module name a path would have if every folder were a package."""
    return path.removesuffix(".py").replace("/", ".")


def _import_for(call: Call) -> str | None:
    """The module-level import line a call needs (None when it needs none)."""
    last = call.module.rsplit(".", 1)[-1]
    return {
        "from": f"from {call.module} import {call.name}",
        "alias": f"import {call.module} as {last}_mod",
        "plain": f"import {call.module}",
        "relative": f"from .{last} import {call.name}",
        "library": f"import {call.module}",
    }.get(call.style)


def _call_lines(call: Call) -> list[str]:
    last = call.module.rsplit(".", 1)[-1]
    return {
        "from": [f"{call.name}()"],
        "alias": [f"{last}_mod.{call.name}()"],
        "plain": [f"{call.module}.{call.name}()"],
        "relative": [f"{call.name}()"],
        "bare": [f"{call.name}()"],
        "local": [f"from {call.module} import {call.name}", f"{call.name}()"],
        "receiver": [f"obj.{call.name}()"],
        "library": [f"{call.module}.{call.name}()"],
        "self": [f"self.{call.name}()"],
        "super": [f"super().{call.name}()"],
    }[call.style]


def render_module(path: str, module: Module) -> str:
    imports: list[str] = []
    body: list[str] = []

    def need(call: Call) -> None:
        line = _import_for(call)
        if line is not None and line not in imports:
            imports.append(line)

    def function(func: Func, indent: str, first: tuple[str, ...] = ()) -> None:
        params = ", ".join([*first, *func.asks, "obj=None"])
        body.append(f"{indent}def {func.name}({params}):")
        for call in func.calls:
            need(call)
            body.extend(f"{indent}    {line}" for line in _call_lines(call))
        body.append(f"{indent}    return None")
        body.append("")

    if module.fixtures:
        imports.append("import pytest")
    for fixture in module.fixtures:
        body.append("@pytest.fixture")
        function(fixture, "")
        body.append("")
    for func in module.funcs:
        function(func, "")
        body.append("")
    for klass in module.classes:
        base = ""
        if klass.base is not None:
            need(klass.base)
            last = klass.base.module.rsplit(".", 1)[-1]
            base = f"{last}_mod.{klass.base.name}" if klass.base.style == "alias" else klass.base.name
        body.append(f"class {klass.name}({base}):")
        for method in klass.methods:
            function(method, "    ", ("self",))
        if not klass.methods:
            body.extend(["    pass", ""])
        body.append("")
    head = ["# padding"] * module.padding
    return "\n".join([*head, *imports, "", "", *body]).rstrip() + "\n"


# --------------------------------------------------------------------------- #
# Strategies
# --------------------------------------------------------------------------- #

def _known_modules(tree: Tree) -> list[str]:
    """Dotted names of source modules, one that never exists (an unresolved import), and the package.

    ``pkg`` is a workspace module while pkg/__init__.py exists and a library import while it does not,
    so a library node and workspace nodes come and go under the same name.
    """
    return sorted({dotted(p) for p in tree.modules if not p.startswith(TEST_FOLDER)} | {"pkg.missing", "pkg"})


def call_strategy(tree: Tree, in_method: bool) -> st.SearchStrategy[Call]:
    modules = _known_modules(tree)
    plain = st.builds(Call, st.sampled_from(CALL_STYLES), st.sampled_from(modules),
                      st.sampled_from(FUNCS + CLASSES + METHODS))
    library = st.builds(Call, st.just("library"), st.sampled_from(LIBRARIES), st.sampled_from(("sum", "dumps")))
    options = [plain, library]
    if in_method:
        options.append(st.builds(Call, st.sampled_from(METHOD_STYLES), st.just(""), st.sampled_from(METHODS)))
    return st.one_of(*options)


def base_strategy(tree: Tree) -> st.SearchStrategy[Call | None]:
    return st.none() | st.builds(Call, st.sampled_from(BASE_STYLES), st.sampled_from(_known_modules(tree)),
                                 st.sampled_from(CLASSES))


def func_strategy(tree: Tree, names: tuple[str, ...], in_method: bool = False) -> st.SearchStrategy[Func]:
    asks = st.lists(st.sampled_from(FIXTURE_NAMES), unique=True, max_size=2) if names is TEST_FUNCS else st.just([])
    return st.builds(Func, st.sampled_from(names), st.lists(call_strategy(tree, in_method), max_size=3), asks)


def fixtures_strategy() -> st.SearchStrategy[list[Func]]:
    """A module's fixtures: each may ask for others (an override asks for the one further out)."""
    fixture = st.builds(Func, st.sampled_from(FIXTURE_NAMES), st.just([]),
                        st.lists(st.sampled_from(FIXTURE_NAMES), unique=True, max_size=1))
    return st.lists(fixture, max_size=2)


def class_strategy(tree: Tree, names: tuple[str, ...], method_names: tuple[str, ...]) -> st.SearchStrategy[Klass]:
    return st.builds(Klass, st.sampled_from(names), base_strategy(tree),
                     st.lists(func_strategy(tree, method_names, in_method=True), max_size=2))


def module_strategy(tree: Tree, is_test: bool) -> st.SearchStrategy[Module]:
    funcs, classes, methods = (TEST_FUNCS, TEST_CLASSES, TEST_FUNCS) if is_test else (FUNCS, CLASSES, METHODS)
    return st.builds(Module, st.lists(func_strategy(tree, funcs), max_size=3),
                     st.lists(class_strategy(tree, classes, methods), max_size=2), st.integers(0, 1),
                     fixtures_strategy())


def _all_source_paths() -> list[str]:
    return [f"{folder}/{stem}.py" if folder else f"{stem}.py" for folder in SOURCE_FOLDERS for stem in STEMS]


def new_source_path(tree: Tree, draw, leaving: str | None = None) -> str | None:
    """A free path for a new or moved module (stems may repeat across folders: same-named modules), or None."""
    free = [p for p in _all_source_paths() if p not in tree.modules or p == leaving]
    if not free:
        return None
    return draw(st.sampled_from(free))


def initial_tree(draw) -> Tree:
    """3-5 modules, the test file, and packages for pkg/ and pkg/sub/."""
    tree = Tree(inits={"pkg", "pkg/sub"})
    paths = draw(st.lists(st.sampled_from(_all_source_paths()), min_size=3, max_size=5, unique=True))
    for path in paths:  # empty first, so calls can name every module
        tree.modules[path] = Module()
    for path in paths:
        tree.modules[path] = draw(module_strategy(tree, is_test=False))
    tree.modules[f"{TEST_FOLDER}/{TEST_STEMS[0]}.py"] = draw(module_strategy(tree, is_test=True))
    for conftest in CONFTESTS:
        if draw(st.booleans()):
            tree.modules[conftest] = Module(fixtures=draw(fixtures_strategy()))
    if draw(st.booleans()):
        tree.reexport = Call("relative", draw(st.sampled_from(_known_modules(tree))), draw(st.sampled_from(FUNCS)))
    return tree


# --------------------------------------------------------------------------- #
# Operations: each edits the model and returns the folders it removed whole
# --------------------------------------------------------------------------- #

def _pick_module(tree: Tree, draw) -> tuple[str, Module]:
    path = draw(st.sampled_from(sorted(tree.modules)))
    return path, tree.modules[path]


def _all_functions(module: Module) -> list[Func]:
    return [*module.funcs, *(m for k in module.classes for m in k.methods)]


def op_add_function(tree: Tree, draw) -> list[str]:
    path, module = _pick_module(tree, draw)
    module.funcs.append(draw(func_strategy(tree, TEST_FUNCS if path.startswith(TEST_FOLDER) else FUNCS)))
    return []


def op_remove_function(tree: Tree, draw) -> list[str]:
    path, module = _pick_module(tree, draw)
    if module.funcs:
        module.funcs.pop(draw(st.integers(0, len(module.funcs) - 1)))
    elif module.classes:
        module.classes.pop(draw(st.integers(0, len(module.classes) - 1)))
    return []


def op_rename_function(tree: Tree, draw) -> list[str]:
    path, module = _pick_module(tree, draw)
    funcs = _all_functions(module)
    if funcs:
        names = TEST_FUNCS if path.startswith(TEST_FOLDER) else FUNCS + METHODS
        draw(st.sampled_from(funcs)).name = draw(st.sampled_from(names))
    return []


def op_add_call(tree: Tree, draw) -> list[str]:
    _, module = _pick_module(tree, draw)
    funcs = _all_functions(module)
    if funcs:
        func = draw(st.sampled_from(funcs))
        func.calls.append(draw(call_strategy(tree, in_method=func not in module.funcs)))
    return []


def op_change_import(tree: Tree, draw) -> list[str]:
    _, module = _pick_module(tree, draw)
    calls = [c for f in _all_functions(module) for c in f.calls if c.style in CALL_STYLES]
    if calls:
        call = draw(st.sampled_from(calls))
        call.style = draw(st.sampled_from(CALL_STYLES))
        call.module = draw(st.sampled_from(_known_modules(tree)))
    return []


def op_change_base(tree: Tree, draw) -> list[str]:
    _, module = _pick_module(tree, draw)
    if module.classes:
        draw(st.sampled_from(module.classes)).base = draw(base_strategy(tree))
    else:
        module.classes.append(draw(class_strategy(tree, CLASSES, METHODS)))
    return []


def op_shift_lines(tree: Tree, draw) -> list[str]:
    _, module = _pick_module(tree, draw)
    module.padding = 1 - module.padding
    return []


def op_add_module(tree: Tree, draw) -> list[str]:
    path = new_source_path(tree, draw)
    if path is None or draw(st.integers(0, 4)) == 0:
        path = f"{TEST_FOLDER}/{draw(st.sampled_from(TEST_STEMS))}.py"
    tree.modules[path] = draw(module_strategy(tree, is_test=path.startswith(TEST_FOLDER)))
    return []


def op_delete_module(tree: Tree, draw) -> list[str]:
    if len(tree.modules) > 1:
        path, _ = _pick_module(tree, draw)
        del tree.modules[path]
    return []


def op_move_module(tree: Tree, draw) -> list[str]:
    path, module = _pick_module(tree, draw)
    if path.startswith(TEST_FOLDER):
        return []
    target = new_source_path(tree, draw, leaving=path)
    if target is None:
        return []
    del tree.modules[path]
    tree.modules[target] = module
    return []


def op_toggle_init(tree: Tree, draw) -> list[str]:
    folder = draw(st.sampled_from(("pkg", "pkg/sub", TEST_FOLDER)))
    tree.inits ^= {folder}
    return []


def op_change_reexport(tree: Tree, draw) -> list[str]:
    tree.reexport = draw(st.none() | st.builds(Call, st.just("relative"), st.sampled_from(_known_modules(tree)),
                                               st.sampled_from(FUNCS + CLASSES)))
    return []


def op_change_fixtures(tree: Tree, draw) -> list[str]:
    """New fixtures for a module or a conftest.py (which may appear or go with it), or new requests of a test."""
    path = draw(st.sampled_from(sorted({*tree.modules, *CONFTESTS})))
    if path in CONFTESTS and draw(st.booleans()):
        if tree.modules.pop(path, None) is None:
            tree.modules[path] = Module(fixtures=draw(fixtures_strategy()))
        return []
    module = tree.modules.setdefault(path, Module())
    tests = [f for f in _all_functions(module) if f.name in TEST_FUNCS]
    if tests and draw(st.booleans()):
        draw(st.sampled_from(tests)).asks = draw(st.lists(st.sampled_from(FIXTURE_NAMES), unique=True, max_size=2))
    else:
        module.fixtures = draw(fixtures_strategy())
    return []


def op_delete_subpackage(tree: Tree, draw) -> list[str]:
    """Remove pkg/sub/ whole: the watcher reports only the folder."""
    for path in [p for p in tree.modules if p.startswith("pkg/sub/")]:
        del tree.modules[path]
    tree.inits.discard("pkg/sub")
    return ["pkg/sub"]


OPERATIONS = (op_add_function, op_remove_function, op_rename_function, op_add_call, op_change_import,
              op_change_base, op_shift_lines, op_add_module, op_delete_module, op_move_module,
              op_toggle_init, op_change_reexport, op_change_fixtures, op_delete_subpackage)
#: What can still be done once every module is gone (deleting the test file, then pkg/sub/, empties the tree).
OPERATIONS_WITHOUT_MODULES = (op_add_module, op_toggle_init, op_change_reexport, op_change_fixtures,
                              op_delete_subpackage)


# --------------------------------------------------------------------------- #
# Disk and comparison
# --------------------------------------------------------------------------- #

class Disk:
    """The tree on disk; each write gets a later mtime than the last."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.files: dict[str, str] = {}
        self.clock = 1_700_000_000 * _MTIME_STEP_NS

    def sync(self, files: dict[str, str], removed_dirs: list[str]) -> list[str]:
        """Make the disk hold ``files``; returns changed paths, minus those under removed folders."""
        for folder in removed_dirs:
            shutil.rmtree(self.root / folder, ignore_errors=True)
        gone = [p for p in self.files if p not in files]
        for path in gone:
            (self.root / path).unlink(missing_ok=True)
        for path, text in files.items():
            if self.files.get(path) == text:
                continue
            full = self.root / path
            full.parent.mkdir(parents=True, exist_ok=True)
            full.write_text(text, encoding="utf-8")
            self.clock += _MTIME_STEP_NS
            os.utime(full, ns=(self.clock, self.clock))
        changed = sorted({*gone, *(p for p in files if self.files.get(p) != files[p])})
        self.files = dict(files)
        return [p for p in changed if not any(p.startswith(d + "/") for d in removed_dirs)]


def _difference(got: list, expected: list) -> tuple[list, list]:
    """(missing, extra) between two lists counted as multisets: a duplicated node or edge counts too."""
    have, want = Counter(got), Counter(expected)
    return sorted((want - have).elements(), key=repr), sorted((have - want).elements(), key=repr)


def assert_same_as_fresh(ws: Workspace, root: Path, fresh_dir: Path) -> None:
    """The live index holds exactly the graph a brand-new index of the same tree holds, with no dangling rows."""
    with Workspace(root, index_dir=fresh_dir) as fresh:
        fresh.index()
        expected_nodes, expected_edges = graph_of(fresh)
        expected_files = fresh.status()["files"]
        expected_totals = _bm25_totals(fresh)
    nodes, edges = graph_of(ws)
    missing_nodes, extra_nodes = _difference(nodes, expected_nodes)
    missing_edges, extra_edges = _difference(edges, expected_edges)
    assert (missing_nodes, extra_nodes, missing_edges, extra_edges) == ([], [], [], []), (
        f"incremental != fresh\nmissing nodes {missing_nodes}\nextra nodes {extra_nodes}\n"
        f"missing edges {missing_edges}\nextra edges {extra_edges}")
    assert integrity_problems(ws) == []
    assert ws.status()["files"] == expected_files
    assert _bm25_totals(ws) == expected_totals, "bm25()'s row count and token totals drifted"
    assert_symbols_match_store(ws)


def _bm25_totals(ws: Workspace) -> list[int]:
    """FTS5's row count and token totals (bm25()'s averages); an index whose rows all went equals one that had none."""
    totals = fts_totals.read(ws.reader())
    return totals if any(totals) else []


def _table(symbols: Symbols) -> dict:
    """A symbol table as plain data, id lists sorted but a class's bases (``super()`` reads them in order): two
    tables of one store compare equal."""
    def ids(index: dict) -> dict:
        return {key: sorted(values) for key, values in index.items()}
    return {"nodes": symbols.nodes, "by_qualname": ids(symbols.by_qualname), "by_name": ids(symbols.by_name),
            "modules": ids(symbols.modules), "module_imports": symbols.module_imports,
            "bases": symbols.bases, "top_packages": symbols.top_packages, "fixtures": ids(symbols.fixtures),
            "module_fixtures": ids(symbols.module_fixtures)}


def assert_symbols_match_store(ws: Workspace) -> None:
    """The table a pass kept in memory equals the one a restart would load: nothing stale survives a pass."""
    live = ws._pass._symbols
    if live is None:
        return
    live_table, loaded_table = _table(live), _table(load_symbols(ws.reader()))
    for part, loaded in loaded_table.items():
        assert live_table[part] == loaded, f"in-memory symbol table drifted from the store in {part}"


@pytest.mark.parametrize("mode", ["walk", "paths"])
# No shrink phase: shrinking whole edit sequences costs minutes; the notes print every step's tree instead.
@settings(max_examples=MAX_EXAMPLES, deadline=None, phases=(Phase.explicit, Phase.reuse, Phase.generate),
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(data=st.data())
def test_incremental_index_equals_fresh_index(mode, data):
    """``walk``: a full pass after each edit; ``paths``: the watcher's pass over the changed paths only."""
    tree = initial_tree(data.draw)
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        root = tmp_path / "ws"
        root.mkdir()
        disk = Disk(root)
        disk.sync(tree.render(), [])
        ws = Workspace(root, index_dir=tmp_path / "live")
        try:
            ws.index()
            assert_same_as_fresh(ws, root, tmp_path / "fresh-0")
            for step in range(1, data.draw(st.integers(1, MAX_STEPS), label="steps") + 1):
                if data.draw(st.booleans(), label=f"reopen before step {step}"):
                    # A restart: the next pass starts from the symbol table loaded from the store.
                    ws.close()
                    ws = Workspace(root, index_dir=tmp_path / "live")
                ops = OPERATIONS if tree.modules else OPERATIONS_WITHOUT_MODULES
                op = data.draw(st.sampled_from(ops), label=f"op {step}")
                removed_dirs = op(tree, data.draw)
                files = tree.render()
                changed = disk.sync(files, removed_dirs)
                note(f"step {step}: {op.__name__} changed {changed} removed {removed_dirs}\n"
                     + "\n".join(f"--- {p}\n{t}" for p, t in sorted(files.items())))
                if mode == "walk":
                    ws.index()
                else:
                    ws.index(paths=changed, deleted_dirs=removed_dirs)
                assert_same_as_fresh(ws, root, tmp_path / f"fresh-{step}")
        finally:
            ws.close()


# --------------------------------------------------------------------------- #
# Engine bugs the property test found, as fixed examples
# --------------------------------------------------------------------------- #

def test_new_module_resolves_an_earlier_import(tmp_path):
    live, fresh = graphs_after(tmp_path, {"a.py": "from b import g\n\n\ndef f():\n    g()\n"},
                                [{"b.py": "def g():\n    pass\n"}])
    assert live == fresh


def test_two_files_with_one_module_name(tmp_path):
    live, fresh = graphs_after(tmp_path, {
        "a/util.py": "def one():\n    pass\n",
        "b/util.py": "def two():\n    pass\n",
        "app.py": "import util\n\n\ndef main():\n    util.one()\n",
    }, [{"b/util.py": None}, {"app.py": "import util\n\n\ndef main():\n    util.one()\n    return 1\n"}])
    assert live == fresh


def test_duplicate_definition_makes_a_bare_call_ambiguous(tmp_path):
    live, fresh = graphs_after(tmp_path, {"a.py": "def load():\n    pass\n", "b.py": "def f():\n    load()\n"},
                                [{"a.py": "def load():\n    pass\n\n\ndef load():\n    return 1\n"}])
    assert live == fresh


def test_module_moved_under_the_same_name_relinks_what_used_it(tmp_path):
    """A move to a folder without __init__.py keeps the module name and every lookup's answer: only ids change."""
    start = {"omega.py": "class Node:\n    def step(self):\n        pass\n",
             "app.py": "def run(x):\n    x.step()\n",
             "tests/test_omega.py": "import omega\n\n\nclass TestNode:\n    def test_step(self):\n        omega.Node().step()\n"}
    moved = {"omega.py": None, "lib/omega.py": start["omega.py"]}
    live, fresh = graphs_after(tmp_path, start, [moved])
    assert live == fresh


def test_move_that_changes_which_same_named_module_wins(tmp_path):
    """Of two modules named ``util`` an import takes the one with the smaller path; a move can change which."""
    start = {"b/util.py": "def two():\n    pass\n", "c/util.py": "def one():\n    pass\n",
             "app.py": "import util\n\n\ndef main():\n    util.one()\n"}
    live, fresh = graphs_after(tmp_path, start, [{"c/util.py": None, "a/util.py": start["c/util.py"]}])
    assert live == fresh


def test_a_class_that_loses_its_bases_relinks_the_super_calls_through_it(tmp_path):
    """``Leaf.step``'s ``super().step()`` reaches ``Root.step`` through ``Mid``; once ``Mid`` has no base, a
    fresh index has no such call, and neither may the incremental one (the edit is in ``mid.py`` only)."""
    start = {"pkg/__init__.py": "",
             "pkg/base.py": "class Root:\n    def step(self):\n        pass\n",
             "pkg/mid.py": "from pkg.base import Root\n\n\nclass Mid(Root):\n    pass\n",
             "pkg/leaf.py": "from pkg.mid import Mid\n\n\nclass Leaf(Mid):\n    def step(self):\n        super().step()\n"}
    live, fresh = graphs_after(tmp_path, start, [{"pkg/mid.py": "class Mid:\n    pass\n"}])
    assert live == fresh
    calls = [(src[2], dst[2]) for src, kind, dst, _ in live[1] if kind == "calls"]
    assert ("pkg.leaf.Leaf.step", "pkg.base.Root.step") not in calls


# --------------------------------------------------------------------------- #
# The symbol table preloaded by warm()
# --------------------------------------------------------------------------- #

def test_warm_preloads_the_symbol_table_the_next_pass_uses(tmp_path):
    files = {"pkg/__init__.py": "", "pkg/a.py": "class A:\n    pass\n",
             "pkg/b.py": "from pkg.a import A\n\n\nclass B(A):\n    def run(self):\n        return A()\n"}
    root = write_tree(tmp_path / "ws", files)
    with Workspace(root, index_dir=tmp_path / "live") as ws:
        ws.index()
    with Workspace(root, index_dir=tmp_path / "live") as ws:
        ws.index()  # nothing changed: a pass that needs no symbol table
        assert not ws._pass.has_symbols
        ws.warm(wait=True)
        assert ws._pass.has_symbols
        assert_symbols_match_store(ws)
        write_tree(root, {"pkg/a.py": "class A:\n    pass\n\n\nclass C(A):\n    pass\n"})
        ws.index(paths=["pkg/a.py"])
        assert_same_as_fresh(ws, root, tmp_path / "fresh")


_TOKENIZER_PROBE = """
import sys
from indexer import tokens
from indexer.workspace import Workspace
with Workspace(sys.argv[1], index_dir=sys.argv[2]) as ws:
    ws.index()
    before = tokens.CL100K in tokens._loaded
    ws.warm(wait=True)
    print(before, tokens.CL100K in tokens._loaded)
"""


def test_warm_loads_the_token_counter_the_first_answer_needs(tmp_path):
    """In a fresh process (this one has counted tokens already): the first search or context after warm() must
    not load cl100k's ranks itself (~0.5 s on the first save's visibility and on a server's first answer)."""
    import subprocess
    import sys

    root = write_tree(tmp_path / "ws", {"m.py": "def f():\n    return 1\n"})
    out = subprocess.run([sys.executable, "-c", _TOKENIZER_PROBE, str(root), str(tmp_path / "idx")],
                         capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.split() == ["False", "True"]


def test_a_save_that_keeps_the_paths_reuses_the_file_names_of_the_last_generation(tmp_path):
    from indexer.search.hybrid import _file_names

    root = write_tree(tmp_path / "ws", {"pkg/__init__.py": "", "pkg/a.py": "def f():\n    return 1\n"})
    with Workspace(root, index_dir=tmp_path / "live") as ws:
        ws.index()
        first = _file_names(ws.reader())
        write_tree(root, {"pkg/a.py": "def f():\n    return 2\n"})
        ws.index(paths=["pkg/a.py"])
        assert _file_names(ws.reader()) is first  # a new generation, the same paths
        write_tree(root, {"pkg/cookies.py": "def jar():\n    return {}\n"})
        ws.index(paths=["pkg/cookies.py"])
        names = _file_names(ws.reader())
        assert names is not first and "pkg/cookies.py" in names.paths and "cookies" in names.files_of


def test_a_preloaded_table_older_than_the_store_is_not_adopted(tmp_path):
    root = write_tree(tmp_path / "ws", {"m.py": "def f():\n    return 1\n"})
    with Workspace(root, index_dir=tmp_path / "live") as ws:
        ws.index()
        ws._pass._symbols = None  # as after a restart
        symbols, generation = snapshot_symbols(ws.reader())
        write_tree(root, {"m.py": "def f():\n    return 1\n\n\ndef g():\n    return f()\n"})
        ws.index()  # a pass ran between the snapshot and the hand-over: it loaded the table itself
        own = ws._pass._symbols
        assert not ws._pass.adopt_symbols(symbols, generation)
        assert ws._pass._symbols is own
        ws._pass._symbols = None
        assert not ws._pass.adopt_symbols(symbols, generation)  # the store moved on since the snapshot
        assert ws._pass.adopt_symbols(*snapshot_symbols(ws.reader()))
        assert_symbols_match_store(ws)


def test_dependents_are_found_through_non_ascii_names(tmp_path):
    """Lookups are recorded under the names they consulted (stored as JSON text): a definition of a name
    outside ASCII appearing in another file must bring the files that looked it up back for resolution."""
    start = {"pkg/__init__.py": "", "pkg/a.py": "def f():\n    return größe()\n"}
    added = {"pkg/c.py": "def größe():\n    return 2\n"}
    live, fresh = graphs_after(tmp_path, start, [added])
    assert live == fresh
    assert (("pkg/a.py", "function", "pkg.a.f"), "calls", ("pkg/c.py", "function", "pkg.c.größe")) in {
        edge[:3] for edge in live[1]}


def test_super_picks_the_same_base_of_two_same_named_ones_whatever_their_ids(tmp_path):
    """``class TestBase(Base)`` with ``Base`` defined twice resolves to both; ``super().step()`` takes the first
    that has ``step``. Re-writing one of them gives it newer ids: the choice must not follow them."""
    start = {"pkg/__init__.py": "",
             "pkg/omega.py": "",
             "pkg/sub/__init__.py": "",
             "pkg/sub/delta.py": "class Base:\n    def step(self):\n        pass\n",
             "tests/test_alpha.py": "class TestBase(Base):\n    def test_run(self):\n        super().step()\n"}
    live, fresh = graphs_after(tmp_path, start, [{"pkg/omega.py": "class Base:\n    def step(self):\n        pass\n"}])
    assert live == fresh
    supers = {dst[0] for src, kind, dst, _ in live[1] if kind == "calls" and src[2] == "test_alpha.TestBase.test_run"}
    assert supers == {"pkg/omega.py"}  # of two equal candidates, the one with the smaller path
