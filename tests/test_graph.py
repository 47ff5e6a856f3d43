"""The code graph of a hand-made package: every edge kind, confidences, walks and target forms."""

from __future__ import annotations

from pathlib import Path

import pytest

from indexer.graph.query import UnknownTarget
from indexer.types import Confidence, Link, NodeKind
from indexer.workspace import Workspace

FIXTURE: dict[str, str] = {
    "pkg/__init__.py": "from .core import Engine\n",
    "pkg/base.py": (
        "class Base:\n"
        "    def step(self):\n"
        "        return 0\n"
        "\n"
        "    def reset(self):\n"
        "        return None\n"
    ),
    "pkg/util.py": (
        "def make():\n"
        "    return 1\n"
        "\n"
        "\n"
        "def helper():\n"
        "    return 2\n"
    ),
    "pkg/sub/__init__.py": "",
    "pkg/sub/tools.py": (
        "def shout(x):\n"
        "    return x\n"
    ),
    "pkg/other.py": (
        "def lonely():\n"
        "    return 3\n"
        "\n"
        "\n"
        "class Wheel:\n"
        "    def spin(self):\n"
        "        return 4\n"
        "\n"
        "\n"
        "class Top:\n"
        "    def spin(self):\n"
        "        return 5\n"
    ),
    "pkg/core.py": (
        "import numpy as np\n"  # 1
        "import pkg.sub.tools as tools\n"  # 2
        "from pkg.base import Base\n"  # 3
        "from .util import make\n"  # 4
        "\n"  # 5
        "\n"  # 6
        "class Engine(Base):\n"  # 7
        "    def step(self):\n"  # 8
        "        self.reset()\n"  # 9
        "        return super().step()\n"  # 10
        "\n"  # 11
        "    def total(self):\n"  # 12
        "        return np.sum([self.step()])\n"  # 13
        "\n"  # 14
        "\n"  # 15
        "def build():\n"  # 16
        "    make()\n"  # 17
        "    return tools.shout(1)\n"  # 18
        "\n"
        "\n"
        "def lazy():\n"
        "    from pkg.util import helper\n"
        "    return helper()\n"
        "\n"
        "\n"
        "def local_caller():\n"
        "    return build()\n"
        "\n"
        "\n"
        "def orphan_caller():\n"
        "    return lonely()\n"
        "\n"
        "\n"
        "def ambiguous_caller(thing):\n"
        "    return thing.spin()\n"
    ),
    "app.py": (
        "from pkg import Engine\n"
        "\n"
        "\n"
        "def main():\n"
        "    return Engine()\n"
    ),
    "cycle.py": (
        "def ping(n):\n"
        "    return pong(n - 1)\n"
        "\n"
        "\n"
        "def pong(n):\n"
        "    return ping(n - 1)\n"
    ),
    "tests/test_core.py": (
        "from pkg import Engine\n"
        "from pkg.util import make\n"
        "\n"
        "\n"
        "def test_make():\n"
        "    assert make() == 1\n"
        "\n"
        "\n"
        "class TestEngine:\n"
        "    def test_total(self):\n"
        "        assert Engine() is not None\n"
    ),
    "tests/test_unit.py": (
        "import unittest\n"
        "\n"
        "from pkg.sub.tools import shout\n"
        "\n"
        "\n"
        "class ToolsCheck(unittest.TestCase):\n"
        "    def test_shout(self):\n"
        "        self.assertEqual(shout(1), 1)\n"
    ),
}


@pytest.fixture(scope="module")
def ws(tmp_path_factory) -> Workspace:
    """The fixture package, indexed once for every read-only test of this file."""
    root = tmp_path_factory.mktemp("graph") / "ws"
    for rel, source in FIXTURE.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(source, encoding="utf-8")
    workspace = Workspace(root, index_dir=root.parent / "idx")
    workspace.index()
    yield workspace
    workspace.close()


def links(ws: Workspace, target: str, **kwargs) -> dict[tuple[str, str], Link]:
    """Links of ``target`` keyed by (link name, other node's qualname)."""
    return {(l.name, l.node.qualname): l for l in ws.related(ws.node(target), **kwargs)}


def has(ws: Workspace, target: str, name: str, other: str) -> bool:
    return (name, other) in links(ws, target)


# --------------------------------------------------------------------------- #
# Every edge kind, both ways
# --------------------------------------------------------------------------- #

@pytest.mark.parametrize("src, kind, dst, inverse", [
    ("pkg.core", "contains", "pkg.core.Engine", "belongs_to"),
    ("pkg.core.Engine", "contains", "pkg.core.Engine.step", "belongs_to"),
    ("pkg.core", "imports", "pkg.base", "imported_by"),
    ("pkg.core", "imports", "pkg.util", "imported_by"),  # relative: from .util import make
    ("pkg.core", "imports", "pkg.sub.tools", "imported_by"),  # import pkg.sub.tools as tools
    ("pkg", "imports", "pkg.core.Engine", "imported_by"),  # the re-export
    ("pkg.core.Engine", "inherits", "pkg.base.Base", "inherited_by"),  # base in another module
    ("pkg.core.Engine.step", "calls", "pkg.base.Base.reset", "called_by"),  # self.x() via the base
    ("pkg.core.Engine.step", "calls", "pkg.base.Base.step", "called_by"),  # super().x()
    ("pkg.core.Engine.total", "calls", "pkg.core.Engine.step", "called_by"),  # self.x() in the class
    ("pkg.core.build", "calls", "pkg.util.make", "called_by"),  # relative from-import
    ("pkg.core.build", "calls", "pkg.sub.tools.shout", "called_by"),  # import a.b as c; c.f()
    ("pkg.core.lazy", "calls", "pkg.util.helper", "called_by"),  # function-level import
    ("app.main", "calls", "pkg.core.Engine", "called_by"),  # re-export: from pkg import Engine
    ("test_core.test_make", "tests", "pkg.util.make", "tested_by"),  # by call
    ("test_core.TestEngine", "tests", "pkg.core.Engine", "tested_by"),  # TestX -> X convention
    ("test_core", "tests", "pkg.core", "tested_by"),  # test_core.py -> core.py convention
    ("test_unit.ToolsCheck.test_shout", "tests", "pkg.sub.tools.shout", "tested_by"),  # unittest
    ("pkg.core", "depends_on", "numpy", "used_by"),
    ("pkg.core.Engine.total", "depends_on", "numpy", "used_by"),  # np.sum()
])
def test_edge_is_walkable_both_ways(ws, src, kind, dst, inverse):
    assert has(ws, src, kind, dst), f"{src} -{kind}-> {dst} missing: {sorted(links(ws, src))}"
    assert has(ws, dst, inverse, src), f"{dst} -{inverse}-> {src} missing: {sorted(links(ws, dst))}"


def test_every_edge_kind_is_stored(ws):
    assert set(ws.status()["edges"]) == {"contains", "imports", "calls", "inherits", "tests", "depends_on"}


def test_node_kinds(ws):
    kinds = {q: ws.node(q).kind for q in (
        "pkg.core", "pkg.core.Engine", "pkg.core.Engine.step", "pkg.core.build", "numpy",
        "test_core.test_make", "test_core.TestEngine.test_total", "test_unit.ToolsCheck.test_shout")}
    assert kinds == {
        "pkg.core": NodeKind.MODULE, "pkg.core.Engine": NodeKind.CLASS, "pkg.core.Engine.step": NodeKind.METHOD,
        "pkg.core.build": NodeKind.FUNCTION, "numpy": NodeKind.LIBRARY, "test_core.test_make": NodeKind.TEST,
        "test_core.TestEngine.test_total": NodeKind.TEST, "test_unit.ToolsCheck.test_shout": NodeKind.TEST,
    }
    assert ws.node("numpy").path is None
    assert ws.node("pkg.core").path == "pkg/core.py"


def test_test_named_after_function_is_linked_by_convention(ws):
    link = links(ws, "pkg.util.make")[("tested_by", "test_core.test_make")]
    assert link.confidence == Confidence.IMPORT  # the call beats the convention guess


def test_test_class_convention_link_has_convention_confidence(ws):
    assert links(ws, "pkg.core.Engine")[("tested_by", "test_core.TestEngine")].confidence == Confidence.CONVENTION


# --------------------------------------------------------------------------- #
# Confidences
# --------------------------------------------------------------------------- #

def test_documented_confidence_order():
    assert (Confidence.STRUCTURAL > Confidence.IMPORT > Confidence.SAME_MODULE > Confidence.GLOBAL_UNIQUE
            > Confidence.CONVENTION > Confidence.AMBIGUOUS > 0)


@pytest.mark.parametrize("src, dst, confidence", [
    ("pkg.core.build", "pkg.util.make", Confidence.IMPORT),
    ("pkg.core.local_caller", "pkg.core.build", Confidence.SAME_MODULE),
    ("pkg.core.orphan_caller", "pkg.other.lonely", Confidence.GLOBAL_UNIQUE),  # no import, defined once
    ("pkg.core.ambiguous_caller", "pkg.other.Wheel.spin", Confidence.AMBIGUOUS),  # unknown receiver
    ("pkg.core.ambiguous_caller", "pkg.other.Top.spin", Confidence.AMBIGUOUS),
])
def test_call_confidence_by_how_it_was_resolved(ws, src, dst, confidence):
    assert links(ws, src, kinds=["calls"])[("calls", dst)].confidence == confidence


def test_structural_edges_are_certain(ws):
    assert links(ws, "pkg.core")[("contains", "pkg.core.Engine")].confidence == Confidence.STRUCTURAL
    assert links(ws, "pkg.core")[("imports", "pkg.base")].confidence == Confidence.STRUCTURAL


def test_external_calls_do_not_invent_workspace_callees(ws):
    callees = {q for (name, q) in links(ws, "pkg.core.Engine.total") if name == "calls"}
    assert not any(q.endswith(".sum") for q in callees)


# --------------------------------------------------------------------------- #
# related(): depth, cycles, direction, kinds
# --------------------------------------------------------------------------- #

def test_called_by_depth_two_walks_two_levels(ws):
    one = links(ws, "pkg.core.build", kinds=["called_by"], depth=1)
    two = links(ws, "pkg.util.make", kinds=["called_by"], depth=2)
    assert set(one) == {("called_by", "pkg.core.local_caller")}
    assert {("called_by", "pkg.core.build"), ("called_by", "test_core.test_make"),
            ("called_by", "pkg.core.local_caller")} <= set(two)
    assert two[("called_by", "pkg.core.build")].depth == 1
    second = two[("called_by", "pkg.core.local_caller")]
    assert second.depth == 2
    assert second.via == ws.node("pkg.core.build").id


def test_depth_one_stops_at_direct_callers(ws):
    assert ("called_by", "pkg.core.local_caller") not in links(ws, "pkg.util.make", kinds=["called_by"])


def test_cycle_terminates_and_lists_each_node_once(ws):
    found = ws.related(ws.node("cycle.ping"), kinds=["calls"], direction="out", depth=50)
    assert [(l.name, l.node.qualname, l.depth) for l in found] == [("calls", "cycle.pong", 1)]
    both = ws.related(ws.node("cycle.ping"), kinds=["calls"], depth=50)
    assert sorted((l.name, l.node.qualname) for l in both) == [("called_by", "cycle.pong"), ("calls", "cycle.pong")]


def test_direction_filters_stored_kinds(ws):
    out = links(ws, "pkg.core.build", kinds=["calls"], direction="out")
    inn = links(ws, "pkg.core.build", kinds=["calls"], direction="in")
    both = links(ws, "pkg.core.build", kinds=["calls"])
    assert {n for n, _ in out} == {"calls"} and ("calls", "pkg.util.make") in out
    assert {n for n, _ in inn} == {"called_by"} and ("called_by", "pkg.core.local_caller") in inn
    assert set(both) == set(out) | set(inn)


def test_inverse_name_ignores_direction_both(ws):
    assert {n for n, _ in links(ws, "pkg.core.build", kinds=["called_by"])} == {"called_by"}


@pytest.mark.parametrize("kwargs", [{"kinds": ["calls_into"]}, {"direction": "up"}, {"depth": 0}])
def test_bad_related_arguments_raise_value_error(ws, kwargs):
    with pytest.raises(ValueError):
        ws.related(ws.node("pkg.core.build"), **kwargs)


def test_unknown_kind_message_lists_valid_names(ws):
    with pytest.raises(ValueError, match="called_by"):
        ws.related("pkg.core.build", kinds=["callers"])


def test_limit_caps_the_answer(ws):
    assert len(ws.related(ws.node("pkg.core"), depth=3, limit=2)) == 2


# --------------------------------------------------------------------------- #
# Target forms
# --------------------------------------------------------------------------- #

def test_path_gives_the_module(ws):
    assert [n.qualname for n in ws.nodes("pkg/core.py")] == ["pkg.core"]
    assert [n.qualname for n in ws.nodes("./pkg/core.py")] == ["pkg.core"]


@pytest.mark.parametrize("line, qualname", [
    (9, "pkg.core.Engine.step"),  # inside a method: the innermost definition
    (7, "pkg.core.Engine"),  # the class line itself
    (17, "pkg.core.build"),
    (1, "pkg.core"),  # module level
])
def test_path_line_gives_the_innermost_definition(ws, line, qualname):
    assert [n.qualname for n in ws.nodes(f"pkg/core.py:{line}")] == [qualname]


def test_path_line_past_the_end_is_unknown(ws):
    with pytest.raises(UnknownTarget, match="no line"):
        ws.nodes("pkg/core.py:9999")


def test_dotted_qualname_and_suffix(ws):
    assert [n.qualname for n in ws.nodes("pkg.core.Engine.step")] == ["pkg.core.Engine.step"]
    assert [n.qualname for n in ws.nodes("Engine.step")] == ["pkg.core.Engine.step"]
    assert [n.qualname for n in ws.nodes("core.Engine")] == ["pkg.core.Engine"]


def test_a_name_a_package_re_exports_is_its_definition(ws):
    """``pkg/__init__.py`` imports Engine from ``.core``: users write ``pkg.Engine``, as its callers import it."""
    assert [n.qualname for n in ws.nodes("pkg.Engine")] == ["pkg.core.Engine"]
    with pytest.raises(UnknownTarget):
        ws.nodes("pkg.Base")  # pkg does not import pkg.base


def test_bare_name_gives_every_definition(ws):
    assert sorted(n.qualname for n in ws.nodes("spin")) == ["pkg.other.Top.spin", "pkg.other.Wheel.spin"]
    assert sorted(n.qualname for n in ws.nodes("step")) == ["pkg.base.Base.step", "pkg.core.Engine.step"]


def test_suffix_must_match_whole_parts(ws):
    with pytest.raises(UnknownTarget):
        ws.nodes("ngine.step")


def test_absolute_path_inside_workspace_is_accepted(ws):
    assert ws.node(str(ws.root / "pkg" / "core.py")).qualname == "pkg.core"
    assert ws.node(f"{ws.root / 'pkg' / 'core.py'}:17").qualname == "pkg.core.build"


def test_node_id_target(ws):
    node = ws.node("pkg.core.build")
    assert ws.node(node.id) == node
    with pytest.raises(UnknownTarget):
        ws.node(10**9)


def test_unknown_target_has_a_helpful_message(ws):
    with pytest.raises(UnknownTarget, match=r"no node matches 'NoSuchThing'.*path:line"):
        ws.nodes("NoSuchThing")
    with pytest.raises(UnknownTarget, match="empty target"):
        ws.nodes("  ")


def test_absolute_path_outside_workspace_is_refused(ws, tmp_path: Path):
    outside = tmp_path / "elsewhere.py"
    outside.write_text("def f():\n    pass\n")
    with pytest.raises(UnknownTarget, match="outside the workspace"):
        ws.nodes(str(outside))
    with pytest.raises(UnknownTarget, match="outside the workspace"):
        ws.nodes(f"{outside}:1")


def test_location_is_citable(ws):
    node = ws.node("pkg.core.build")
    assert node.location == f"pkg/core.py:{node.start_line}-{node.end_line}"
    assert (node.start_line, node.end_line) == (16, 18)


def test_a_workspace_that_is_a_package_names_its_modules_as_its_code_imports_them(tmp_path):
    root = tmp_path / "shopkit"
    files = {"__init__.py": "", "prices.py": "def price():\n    return 1\n",
             "cart.py": "from shopkit.prices import price\n\n\ndef total():\n    return price()\n",
             "sub/__init__.py": "", "sub/tax.py": "from ..prices import price\n\n\ndef tax():\n    return price()\n"}
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    with Workspace(root, index_dir=tmp_path / "idx") as ws:
        ws.index()
        callers = {l.node.qualname for l in ws.related("shopkit.prices.price", kinds=["called_by"])}
        assert callers == {"shopkit.cart.total", "shopkit.sub.tax.tax"}  # absolute and relative imports
        (root / "more.py").write_text("from shopkit.prices import price\n\n\ndef more():\n    return price()\n")
        ws.index(paths=["more.py"])  # a watcher's batch names a new file the same way
        assert "shopkit.more.more" in {l.node.qualname for l in ws.related("shopkit.prices.price", kinds=["called_by"])}
        (root / "__init__.py").unlink()  # no longer a package: top-level modules
        ws.index()
        assert ws.node("prices.price").qualname == "prices.price"
