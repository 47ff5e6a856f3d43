"""Which files are test code, by their path alone: one rule for the parser, the resolver, the search and the
predictor.

A file is test code when pytest would collect it by name (``test_x.py``, ``x_test.py``, ``tests.py``,
``conftest.py``) or when it lives in a ``tests`` folder. A ``test`` or ``testing`` folder counts only at the
top of the workspace (pytest's own ``testing/``, a project's ``test/``): inside a package those names hold a
library's test support, public code its users call (``django/test/``, ``numpy/testing/``,
``sphinx/testing/``), not tests of the package.
"""

from __future__ import annotations

_TEST_FOLDER = "tests"
_TOP_TEST_FOLDERS = frozenset({"test", "testing"})
_TEST_STEMS = frozenset({"tests", "conftest"})


def is_test_path(path: str) -> bool:
    """True for files pytest would collect by name, under a ``tests`` folder, or under a top ``test(ing)/``."""
    parts = path.replace("\\", "/").split("/")
    stem = parts[-1].rsplit(".", 1)[0]
    if stem.startswith("test_") or stem.endswith("_test") or stem in _TEST_STEMS:
        return True
    folders = parts[:-1]
    return _TEST_FOLDER in folders or (bool(folders) and folders[0] in _TOP_TEST_FOLDERS)
