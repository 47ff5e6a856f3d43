"""pytest fixtures in the graph: a test or fixture depends on the fixtures it asks for by parameter name, found
where pytest finds them (its class, its module, the nearest conftest.py above it, a plugin module), and each
fixture is ``used_by`` them. An incremental index keeps these links equal to a fresh one."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import graph_of, graphs_after, write_tree
from indexer.parse.python import parse_python
from indexer.types import Confidence
from indexer.workspace import Workspace

FILES: dict[str, str] = {
    "pkg/__init__.py": "",
    "pkg/plugin.py": "import pytest\n\n\n@pytest.fixture\ndef tmp_thing():\n    return 1\n",
    "conftest.py": (
        "import pytest\n"
        "\n"
        "\n"
        "@pytest.fixture\n"
        "def app():\n"
        "    return 'root app'\n"
        "\n"
        "\n"
        "@pytest.fixture(scope='module')\n"
        "def client(app):\n"
        "    return app\n"
        "\n"
        "\n"
        "@pytest.fixture(name='database')\n"
        "def database_fixture(app):\n"
        "    return app\n"
    ),
    "tests/test_c.py": (
        "import pytest\n"
        "\n"
        "\n"
        "@pytest.mark.usefixtures('app')\n"
        "class TestMarked:\n"
        "    def test_m(self, database):\n"
        "        pass\n"
    ),
    "tests/sub/conftest.py": "import pytest\n\n\n@pytest.fixture\ndef client(client):\n    return client\n",
    "tests/sub/test_b.py": "def test_b(client, tmp_thing, other=3):\n    assert client\n",
    "tests/helpers.py": "import pytest\n\n\n@pytest.fixture\ndef shared():\n    return 4\n",
    "tests/test_a.py": (
        "import pytest\n"
        "from helpers import shared\n"
        "\n"
        "\n"
        "@pytest.fixture\n"
        "def local():\n"
        "    return 2\n"
        "\n"
        "\n"
        "def test_a(client, local, missing, shared):\n"
        "    pass\n"
        "\n"
        "\n"
        "def helper(app):\n"
        "    return app\n"
        "\n"
        "\n"
        "class TestK:\n"
        "    @pytest.fixture\n"
        "    def local(self):\n"
        "        return 3\n"
        "\n"
        "    def test_k(self, local, app):\n"
        "        pass\n"
    ),
}


def fixture_links(edges: list) -> set[tuple[str, str, str, float]]:
    """(path of src, src qualname, path:qualname of dst, confidence) of every depends_on link into code, of a
    graph's ``edges`` (``graph_of``)."""
    return {(src[0], src[2], f"{dst[0]}:{dst[2]}", conf) for src, kind, dst, conf in edges
            if kind == "depends_on" and dst[0] is not None}


@pytest.fixture
def ws(tmp_path: Path):
    write_tree(tmp_path / "ws", FILES)
    with Workspace(tmp_path / "ws", index_dir=tmp_path / "index") as workspace:
        workspace.index()
        yield workspace


def test_requests_are_the_parameters_pytest_fills():
    source = (b"import pytest\n"
              b"@pytest.fixture\n"
              b"def made(tmp_path, name='x', *args, **kwargs):\n    pass\n"
              b"def test_typed(client: object, flag: bool = True, /, *, key):\n    pass\n"
              b"def helper(client):\n    pass\n"
              b"class TestC:\n"
              b"    def test_m(self, client):\n        pass\n"
              b"    @staticmethod\n"
              b"    def test_s(client):\n        pass\n"
              b"@pytest.fixture(name='db')\n"
              b"def db_fixture():\n    pass\n"
              b"@pytest.mark.usefixtures('db', f'x{1}')\n"
              b"class TestMarked:\n"
              b"    @pytest.mark.usefixtures('cache')\n"
              b"    def test_u(self, db):\n        pass\n"
              b"@pytest.mark.parametrize('db, n', [(1, 2)])\n"
              b"@pytest.mark.parametrize(['client'], [(3,)], indirect=True)\n"
              b"def test_p(db, n, client, app):\n    pass\n"
              b"@pytest.mark.parametrize(('app',), [(1,)])\n"
              b"class TestP:\n"
              b"    def test_q(self, app, db):\n        pass\n")
    pf = parse_python("tests/test_x.py", source)
    asked = {d.local_name: d.fixtures for d in pf.definitions}
    assert asked == {"made": ("tmp_path",), "test_typed": ("client", "key"), "helper": (), "TestC": (),
                     "TestC.test_m": ("client",), "TestC.test_s": ("client",), "db_fixture": (),
                     "TestMarked": (), "TestMarked.test_u": ("db", "cache"),  # an f-string names no fixture
                     # a parametrized argument is no fixture, but one passed to its fixture (indirect) is
                     "test_p": ("client", "app"), "TestP": (), "TestP.test_q": ("db",)}
    assert {d.local_name: d.fixture_name for d in pf.definitions if d.fixture_name} == {"made": "made",
                                                                                       "db_fixture": "db"}


def test_each_request_finds_the_fixture_pytest_would_use(ws):
    links = fixture_links(graph_of(ws)[1])
    assert links == {
        # the test's class first, then its module, an import into it, the nearest conftest.py, a plugin
        ("tests/test_a.py", "test_a.TestK.test_k", "tests/test_a.py:test_a.TestK.local", Confidence.SAME_MODULE),
        ("tests/test_a.py", "test_a.TestK.test_k", "conftest.py:conftest.app", Confidence.IMPORT),
        ("tests/test_a.py", "test_a.test_a", "tests/test_a.py:test_a.local", Confidence.SAME_MODULE),
        ("tests/test_a.py", "test_a.test_a", "tests/helpers.py:helpers.shared", Confidence.IMPORT),
        ("tests/test_a.py", "test_a.test_a", "conftest.py:conftest.client", Confidence.IMPORT),
        ("tests/sub/test_b.py", "test_b.test_b", "tests/sub/conftest.py:conftest.client", Confidence.IMPORT),
        ("tests/sub/test_b.py", "test_b.test_b", "pkg/plugin.py:pkg.plugin.tmp_thing", Confidence.GLOBAL_UNIQUE),
        # fixtures ask for fixtures; an override asks for the one further out, never for itself
        ("conftest.py", "conftest.client", "conftest.py:conftest.app", Confidence.SAME_MODULE),
        ("tests/sub/conftest.py", "conftest.client", "conftest.py:conftest.client", Confidence.IMPORT),
        # a fixture registered under another name, and a usefixtures mark on the class
        ("conftest.py", "conftest.database_fixture", "conftest.py:conftest.app", Confidence.SAME_MODULE),
        ("tests/test_c.py", "test_c.TestMarked.test_m", "conftest.py:conftest.database_fixture", Confidence.IMPORT),
        ("tests/test_c.py", "test_c.TestMarked.test_m", "conftest.py:conftest.app", Confidence.IMPORT),
    }


def test_a_fixture_lists_the_tests_that_use_it(ws):
    [client] = [n for n in ws.nodes("client") if n.path == "conftest.py"]
    users = {(link.node.path, link.node.qualname) for link in ws.related(client, kinds=["used_by"])}
    assert users == {("tests/test_a.py", "test_a.test_a"), ("tests/sub/conftest.py", "conftest.client")}


NEARER = {"tests/conftest.py": "import pytest\n\n\n@pytest.fixture\ndef tmp_thing():\n    return 5\n"}
EDITS = {
    "a nearer conftest.py appears": [NEARER],
    "a nearer conftest.py goes again": [NEARER, {"tests/conftest.py": None}],
    "the override is no fixture any more (same node)": [{"tests/sub/conftest.py": "def client(client):\n    pass\n"}],
    "the module's fixture is renamed": [{"tests/test_a.py": FILES["tests/test_a.py"].replace("def local():",
                                                                                         "def local2():")}],
    "the plugin's fixture moves into a class": [{"pkg/plugin.py": "import pytest\n\n\nclass Box:\n    @pytest.fixture\n"
                                                                  "    def tmp_thing(self):\n        return 1\n"}],
    "a fixture is registered under another name": [{"conftest.py": FILES["conftest.py"].replace(
        "name='database'", "name='db'")}],
    "a test asks for one more": [{"tests/sub/test_b.py": "def test_b(client, tmp_thing, app):\n    pass\n"}],
}


@pytest.mark.parametrize("watcher", [False, True], ids=["walk", "paths"])
@pytest.mark.parametrize("name", list(EDITS))
def test_an_incremental_index_links_fixtures_as_a_fresh_one(tmp_path, name, watcher):
    live, fresh = graphs_after(tmp_path, FILES, EDITS[name], watcher=watcher)
    assert fixture_links(live[1]) == fixture_links(fresh[1])
    assert live == fresh


def test_the_edits_change_the_links(tmp_path):
    """Each edit above changes what a fresh index links, so the comparison tests something."""
    write_tree(tmp_path / "before", FILES)
    with Workspace(tmp_path / "before", index_dir=tmp_path / "i0") as before:
        before.index()
        start = fixture_links(graph_of(before)[1])
    for i, (name, edits) in enumerate(EDITS.items()):
        _live, fresh = graphs_after(tmp_path / f"e{i}", FILES, edits)
        links = fixture_links(fresh[1])
        if name == "a nearer conftest.py goes again":
            assert links == start, name
        else:
            assert links != start, name


def test_a_test_in_focus_brings_its_fixtures_into_the_context(ws):
    answer = ws.context(focus="test_a.test_a", budget=2000)
    fixtures = {(item.path, item.name) for item in answer.items if item.why.startswith("depends_on from focus")}
    assert fixtures == {("conftest.py", "conftest.client"), ("tests/test_a.py", "test_a.local"),
                        ("tests/helpers.py", "helpers.shared")}


def test_a_fixture_in_focus_brings_the_tests_that_use_it(ws):
    answer = ws.context(focus="conftest.py:10", budget=3000)  # conftest.client
    users = {(item.path, item.name) for item in answer.items if item.why.startswith("uses focus")}
    assert users == {("tests/test_a.py", "test_a.test_a"), ("tests/sub/conftest.py", "conftest.client")}


def test_two_conftest_fixtures_of_one_dotted_name_are_told_apart_by_path(ws):
    from indexer.graph.query import ambiguity

    matches = ws.nodes("conftest.client")
    assert {n.path for n in matches} == {"conftest.py", "tests/sub/conftest.py"}
    assert ambiguity("conftest.client", matches).endswith("They share that dotted name: pass path:line to choose.")
    assert ambiguity("client", ws.nodes("client")).endswith("They share that dotted name: pass path:line to choose.")
