"""Links of common Python patterns the graph used to miss or invent: star re-exports, namespace folders inside a
package, bare decorators, unittest classes named freely, calls on literals, parameters and built-in methods."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import graph_of, write_tree
from indexer.graph.query import find_nodes
from indexer.types import Confidence, NodeKind
from indexer.workspace import Workspace

FILES: dict[str, str] = {
    "app/__init__.py": "from .fields import *\n",
    "app/fields.py": "class CharField:\n    pass\n\n\nclass _Private:\n    pass\n",
    "app/query.py": (
        "class Query:\n"
        "    def join(self, other):\n"
        "        return other\n"
        "\n"
        "    def append(self, item):\n"
        "        return item\n"
    ),
    "app/sansio/base.py": "class BaseApp:\n    def run(self):\n        return 1\n",  # no __init__.py
    "app/web.py": (
        "from .sansio.base import BaseApp\n"
        "from app import CharField, _Private\n"
        "\n"
        "\n"
        "def register(fn):\n"
        "    return fn\n"
        "\n"
        "\n"
        "@register\n"
        "def index():\n"
        "    return ', '.join(['a', 'b'])\n"
        "\n"
        "\n"
        "def collect(out):\n"
        "    out.append(1)\n"
        "    return out\n"
        "\n"
        "\n"
        "def apply(callback):\n"
        "    return callback()\n"
        "\n"
        "\n"
        "def outer():\n"
        "    def inner_only():\n"
        "        return 0\n"
        "    return inner_only()\n"
        "\n"
        "\n"
        "def calls_inner():\n"
        "    return inner_only()\n"
        "\n"
        "\n"
        "class WebApp(BaseApp):\n"
        "    title = CharField()\n"
        "\n"
        "    def serve(self):\n"
        "        return self.run()\n"
    ),
    "tests/base.py": "import unittest\n\n\nclass CalcTestBase(unittest.TestCase):\n    pass\n",
    "tests/test_web.py": (
        "from app.web import register\n"
        "from base import CalcTestBase\n"
        "\n"
        "\n"
        "class RegisterChecks(CalcTestBase):\n"
        "    def test_register(self):\n"
        "        assert register(len) is len\n"
    ),
}


@pytest.fixture(scope="module")
def ws(tmp_path_factory) -> Workspace:
    root = write_tree(tmp_path_factory.mktemp("patterns") / "ws", FILES)
    workspace = Workspace(root, index_dir=root.parent / "idx")
    workspace.index()
    yield workspace
    workspace.close()


def links(ws: Workspace, target: str) -> dict[tuple[str, str], float]:
    return {(l.name, l.node.qualname): l.confidence for l in ws.related(ws.node(target))}


def test_a_name_a_package_re_exports_with_a_star_import_resolves_to_its_definition(ws):
    assert links(ws, "app.web.WebApp")[("calls", "app.fields.CharField")] == Confidence.IMPORT
    assert ("imports", "app.fields.CharField") in links(ws, "app.web")
    assert ("imports", "app.fields._Private") not in links(ws, "app.web")  # a star exports public names only


def test_a_folder_without_init_inside_a_package_is_part_of_its_module_names(ws):
    assert ws.node("app.sansio.base").path == "app/sansio/base.py"
    assert links(ws, "app.web.WebApp")[("inherits", "app.sansio.base.BaseApp")] == Confidence.IMPORT
    assert ("calls", "app.sansio.base.BaseApp.run") in links(ws, "app.web.WebApp.serve")


def test_a_bare_decorator_is_a_call_of_the_enclosing_scope(ws):
    assert ("called_by", "app.web") in links(ws, "app.web.register")


def test_calls_on_literals_and_called_parameters_link_to_nothing(ws):
    assert not [k for k in links(ws, "app.web.index") if k[0] == "calls"]  # ", ".join
    assert not [k for k in links(ws, "app.web.apply") if k[0] == "calls"]  # callback()


def test_a_built_in_method_name_on_an_unknown_receiver_is_only_a_guess(ws):
    assert links(ws, "app.web.collect")[("calls", "app.query.Query.append")] == Confidence.AMBIGUOUS


def test_a_function_nested_in_another_is_no_global_candidate(ws):
    assert ("called_by", "app.web.outer") in links(ws, "app.web.outer.inner_only")
    assert ("called_by", "app.web.calls_inner") not in links(ws, "app.web.outer.inner_only")


def test_unittest_methods_of_a_class_named_freely_in_a_test_file_are_tests(ws):
    assert ws.node("test_web.RegisterChecks.test_register").kind == NodeKind.TEST
    assert ("tested_by", "test_web.RegisterChecks.test_register") in links(ws, "app.web.register")


def test_a_bare_name_means_its_definitions_before_a_module_of_that_name(tmp_path):
    root = write_tree(tmp_path / "ws", {"bulk/__init__.py": "", "pkg/__init__.py": "",
                                        "pkg/query.py": "class QuerySet:\n    def bulk(self):\n        return 1\n"})
    with Workspace(root, index_dir=tmp_path / "idx") as ws:
        ws.index()
        matches = find_nodes(ws.reader(), "bulk")
        assert [n.qualname for n in matches] == ["pkg.query.QuerySet.bulk", "bulk"]
        assert [n.qualname for n in find_nodes(ws.reader(), "./pkg/query.py:3")] == ["pkg.query.QuerySet.bulk"]


def test_a_star_import_follows_its_source_module_through_incremental_passes(tmp_path):
    root = write_tree(tmp_path / "ws", FILES)
    with Workspace(root, index_dir=tmp_path / "idx") as ws:
        ws.index()
        write_tree(root, {"app/fields.py": "class TextField:\n    pass\n"})  # CharField goes
        ws.index(paths=["app/fields.py"])
        assert ("calls", "app.fields.CharField") not in links(ws, "app.web.WebApp")
        write_tree(root, {"app/__init__.py": "from .fields import *\nfrom .query import *\n",
                          "app/query.py": FILES["app/query.py"] + "\n\nclass CharField:\n    pass\n"})
        ws.index(paths=["app/__init__.py", "app/query.py"])
        assert ("calls", "app.query.CharField") in links(ws, "app.web.WebApp")
        with Workspace(root, index_dir=tmp_path / "fresh") as fresh:
            fresh.index()
            assert graph_of(ws) == graph_of(fresh)


def test_a_test_module_tests_the_module_of_its_name_it_imports_not_every_one(tmp_path):
    files = {f"pkg/area{i}/__init__.py": "" for i in range(5)}
    files |= {f"pkg/area{i}/base.py": f"def thing_{i}():\n    return {i}\n" for i in range(5)}
    files |= {"pkg/__init__.py": "",
              "tests/test_base.py": "from pkg.area2 import base\n\n\ndef test_thing():\n    assert base.thing_2()\n",
              "tests/other/test_base.py": "def test_nothing():\n    pass\n"}  # imports none of the five
    root = write_tree(tmp_path / "ws", files)
    with Workspace(root, index_dir=tmp_path / "idx") as ws:
        ws.index()
        conn = ws.reader()
        tested = conn.execute("SELECT s.qualname, d.qualname FROM edges e JOIN nodes s ON s.id = e.src "
                              "JOIN nodes d ON d.id = e.dst WHERE e.kind = 'tests' AND s.kind = 'module'").fetchall()
    assert sorted(tested) == [("test_base", "pkg.area2.base")]


def test_super_means_the_first_base_that_has_the_method(tmp_path):
    root = write_tree(tmp_path / "ws", {"m.py": (
        "class Base:\n    def start(self):\n        return 0\n\n\n"
        "class Mixin:\n    def start(self):\n        return 1\n\n\n"
        "class Engine(Mixin, Base):\n    def start(self):\n        return super().start()\n")})
    with Workspace(root, index_dir=tmp_path / "idx") as ws:
        ws.index()
        calls = {k for k in links(ws, "m.Engine.start") if k[0] == "calls"}
    assert calls == {("calls", "m.Mixin.start")}


def test_a_call_of_an_overloaded_function_links_to_its_implementation_once(tmp_path):
    root = write_tree(tmp_path / "ws", {
        "fields.py": (
            "from typing import overload\n"
            "\n"
            "\n"
            "@overload\n"
            "def Field(default: int) -> int: ...\n"
            "@overload\n"
            "def Field(default: str) -> str: ...\n"
            "def Field(default):\n"
            "    return default\n"
        ),
        "model.py": "from fields import Field\n\n\ndef make():\n    return Field(1)\n"})
    with Workspace(root, index_dir=tmp_path / "idx") as ws:
        ws.index()
        called = ws.reader().execute(
            "SELECT d.start_line FROM edges e JOIN nodes s ON s.id = e.src JOIN nodes d ON d.id = e.dst "
            "WHERE s.qualname = 'model.make' AND e.kind = 'calls'").fetchall()
        signatures = ws.reader().execute("SELECT count(*) FROM nodes WHERE qualname = 'fields.Field'").fetchone()[0]
    assert called == [(8,)]  # the definition the name is bound to, not each signature
    assert signatures == 3  # the typed signatures stay nodes: searches find them


def test_a_stub_beside_its_module_gives_way_to_the_code_that_runs(tmp_path):
    root = write_tree(tmp_path / "ws", {
        "mylib/__init__.py": "",
        "mylib/api.py": "def get(url):\n    return url\n",
        "mylib/api.pyi": "def get(url: str) -> str: ...\n",
        "mylib/only.pyi": "def typed() -> int: ...\n",  # a stub alone (a compiled module's): still linked
        "app.py": "from mylib.api import get\nfrom mylib.only import typed\n\n\ndef main():\n    get('x')\n"
                  "    return typed()\n"})
    with Workspace(root, index_dir=tmp_path / "idx") as ws:
        ws.index()
        called = ws.reader().execute(
            "SELECT f.path, d.qualname FROM edges e JOIN nodes s ON s.id = e.src JOIN nodes d ON d.id = e.dst "
            "JOIN files f ON f.id = d.file_id WHERE s.qualname = 'app.main' AND e.kind = 'calls'").fetchall()
    assert sorted(called) == [("mylib/api.py", "mylib.api.get"), ("mylib/only.pyi", "mylib.only.typed")]
