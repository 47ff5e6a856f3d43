"""Tracebacks into file:line references, read from real CPython and pytest output."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import traceback
from pathlib import Path

import pytest

from indexer.tracebacks import TraceRef, error_message, parse_traceback, relativize, workspace_path

_MODULE = textwrap.dedent(
    """\
    def inner(x):
        return {}[x]


    def outer(x):
        try:
            inner(x)
        except KeyError as exc:
            raise ValueError(f"no key {x}") from exc


    def run():
        outer("k")
    """
)

_FAILING_TESTS = textwrap.dedent(
    """\
    def helper(x):
        if x > 1:
            raise ValueError(f"bad value {x}")
        return x


    def test_raises():
        assert helper(5) == 5


    def test_assert():
        assert helper(1) == 2
    """
)


def _line_of(source: str, fragment: str) -> int:
    """1-based line of the first source line containing fragment."""
    return next(i for i, line in enumerate(source.splitlines(), 1) if fragment in line)


def _real_traceback(path: Path) -> str:
    """format_exc() of a chained exception raised by code compiled from a real file."""
    path.write_text(_MODULE)
    namespace: dict = {}
    exec(compile(path.read_text(), str(path), "exec"), namespace)
    try:
        namespace["run"]()
    except ValueError:
        return traceback.format_exc()
    raise AssertionError("run() did not raise")


def test_real_cpython_chained_traceback(tmp_path: Path) -> None:
    module = tmp_path / "pkg" / "mod.py"
    module.parent.mkdir()
    text = _real_traceback(module)
    refs = parse_traceback(text)
    expected = [  # the cause's traceback first, then the one it caused
        TraceRef(str(module), _line_of(_MODULE, "        inner(x)"), "outer"),
        TraceRef(str(module), _line_of(_MODULE, "return {}[x]"), "inner"),
        TraceRef(str(module), _line_of(_MODULE, 'outer("k")'), "run"),
        TraceRef(str(module), _line_of(_MODULE, "raise ValueError"), "outer"),
    ]
    # The test's own frame comes first in the second traceback; order follows the text.
    this_file = [r for r in refs if r.path == __file__]
    assert len(this_file) == 1 and this_file[0].function == "_real_traceback"
    assert [r for r in refs if r.path == str(module)] == expected
    assert error_message(text) == "ValueError: no key k"
    relative = [TraceRef(r.path.replace(f"{tmp_path}/", ""), r.line, r.function) for r in expected]
    assert relativize(refs, tmp_path) == relative


@pytest.mark.parametrize("tb", ["long", "short", "native", "line"])
def test_real_pytest_failure_output(tmp_path: Path, tb: str) -> None:
    (tmp_path / "test_fail.py").write_text(_FAILING_TESTS)
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", f"--tb={tb}", "test_fail.py"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 1, run.stdout + run.stderr
    refs = relativize(parse_traceback(run.stdout), tmp_path)
    raise_line = _line_of(_FAILING_TESTS, "raise ValueError")
    assert_line = _line_of(_FAILING_TESTS, "assert helper(1) == 2")
    call_line = _line_of(_FAILING_TESTS, "assert helper(5) == 5")
    if tb == "line":  # one location per failure, no function names
        assert refs == [TraceRef("test_fail.py", raise_line), TraceRef("test_fail.py", assert_line)]
    else:
        assert refs == [
            TraceRef("test_fail.py", call_line, "test_raises"),
            TraceRef("test_fail.py", raise_line, "helper"),
            TraceRef("test_fail.py", assert_line, "test_assert"),
        ]
    if tb == "native":  # pytest's own frames are site-packages: parsed, then dropped by relativize
        assert any("site-packages" in r.path for r in parse_traceback(run.stdout))
    assert error_message(run.stdout) == "assert 1 == 2"  # the last summary line


def test_pytest_explanation_block_gets_its_exception_name() -> None:
    text = (
        "    def test_assert():\n"
        ">       assert helper(1) == 2\n"
        "E       assert 1 == 2\n"
        "E        +  where 1 = helper(1)\n"
        "\n"
        "test_fail.py:12: AssertionError\n"
    )
    assert parse_traceback(text) == [TraceRef("test_fail.py", 12, "test_assert")]
    assert error_message(text) == "AssertionError: assert 1 == 2"
    raised = 'E           ValueError: bad value 5\n\ntest_fail.py:3: ValueError\n'
    assert error_message(raised) == "ValueError: bad value 5"


def test_linter_and_type_checker_locations() -> None:
    text = (
        "src/pkg/a.py:3:8: F401 [*] `os` imported but unused\n"
        "src/pkg/b.py:10: error: Incompatible return value type  [return-value]\n"
        "Found 2 errors in 2 files (checked 5 source files)\n"
        "at 12:30:45 see http://example.com:8080/x\n"
        "src/pkg/a.py:3:8: F401 again\n"
    )
    assert parse_traceback(text) == [TraceRef("src/pkg/a.py", 3), TraceRef("src/pkg/b.py", 10)]


def test_pseudo_files_and_syntax_errors() -> None:
    text = (
        "Traceback (most recent call last):\n"
        '  File "<string>", line 1, in <module>\n'
        '  File "<frozen importlib._bootstrap>", line 1176, in _find_and_load\n'
        '  File "app/broken.py", line 4\n'
        "    def f(:\n"
        "          ^\n"
        "SyntaxError: invalid syntax\n"
    )
    assert parse_traceback(text) == [TraceRef("app/broken.py", 4, "")]
    assert error_message(text) == "SyntaxError: invalid syntax"


def test_error_message_without_a_known_format() -> None:
    assert error_message("something broke\n\n") == "something broke"
    assert error_message("") == ""


def test_workspace_path_keeps_only_workspace_code(tmp_path: Path) -> None:
    root = tmp_path / "ws"
    (root / "pkg").mkdir(parents=True)
    link = tmp_path / "link"
    link.symlink_to(root)
    assert workspace_path(str(root / "pkg" / "a.py"), root) == "pkg/a.py"
    assert workspace_path(str(link / "pkg" / "a.py"), root) == "pkg/a.py"  # same files through a symlink
    assert workspace_path("pkg/./b/../a.py", root) == "pkg/a.py"
    assert workspace_path("../other/a.py", root) is None
    assert workspace_path(str(tmp_path / "other.py"), root) is None
    assert workspace_path(str(root / ".venv/lib/python3.11/site-packages/x.py"), root) is None
    assert workspace_path(str(root), root) is None


def test_a_summary_line_cut_to_the_terminal_width_gives_way_to_the_full_message() -> None:
    output = ("    def test_discount():\n>       apply(150)\nE       ValueError: discount over 100%\n\n"
              "shop/pricing.py:3: ValueError\n=== short test summary info ===\n"
              "FAILED tests/test_pricing.py::test_discount - ValueError: discount o...\n")
    assert error_message(output) == "ValueError: discount over 100%"
    cut_alone = "FAILED tests/test_pricing.py::test_discount - ValueError: discount o...\n"
    assert error_message(cut_alone) == "ValueError: discount o..."  # nothing fuller to take
