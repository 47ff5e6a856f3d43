"""One rule says which files are test code: the parser's test nodes, the resolver's test links and the search's
demotion all follow it."""

from __future__ import annotations

import pytest

from conftest import write_tree
from indexer.testpaths import is_test_path
from indexer.types import NodeKind
from indexer.workspace import Workspace


@pytest.mark.parametrize("path", [
    "tests/models.py", "pkg/tests/helpers.py", "src/pkg/tests/unit/deep.py",  # a tests folder, anywhere
    "test/helpers.py", "testing/example_scripts/app.py",  # a test(ing) folder at the top: pytest's own testing/
    "pkg/test_core.py", "pkg/core_test.py", "shop/tests.py", "conftest.py", "pkg/sub/conftest.py",  # by name
    "pkg\\tests\\win.py",
])
def test_test_code(path):
    assert is_test_path(path)


@pytest.mark.parametrize("path", [
    "django/test/testcases.py", "django/test/client.py",  # Django's test framework is code its users call
    "numpy/testing/utils.py", "sphinx/testing/fixtures.py",
    "pkg/core.py", "pkg/testament.py", "pkg/contest.py", "latest/app.py", "pkg/testing.py", "test.py",
])
def test_not_test_code(path):
    assert not is_test_path(path)


def test_a_packages_test_framework_is_code_and_links_like_code(tmp_path):
    """``django/test/testcases.py`` defines ``TestCase``: it is no test of ``Case``, and its methods are methods."""
    files = {
        "pkg/__init__.py": "",
        "pkg/expressions.py": "class Case:\n    pass\n",
        "pkg/test/__init__.py": "",
        "pkg/test/testcases.py": (
            "class TestCase:\n"
            "    def test_setup(self):\n"
            "        return 1\n"
        ),
        "testing/test_expressions.py": (
            "from pkg.expressions import Case\n"
            "\n"
            "\n"
            "def test_case():\n"
            "    assert Case()\n"
        ),
    }
    root = write_tree(tmp_path / "ws", files)
    with Workspace(root, index_dir=tmp_path / "idx") as ws:
        ws.index()
        assert ws.node("pkg.test.testcases.TestCase.test_setup").kind == NodeKind.METHOD
        tested_by = {l.node.qualname for l in ws.related(ws.node("pkg.expressions.Case")) if l.name == "tested_by"}
        assert tested_by == {"test_expressions.test_case"}
        assert ws.node("test_expressions.test_case").kind == NodeKind.TEST
