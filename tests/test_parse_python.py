"""The Python extractor on small inline sources, with the real tree-sitter grammar."""

from __future__ import annotations

import textwrap

import pytest

from indexer.parse import language_of, parse_file
from indexer.parse import python as pyparse
from indexer.terms import terms_text
from indexer.types import Definition, Import, NodeKind, ParsedFile, Reference


def parse(source: str, path: str = "pkg/mod.py") -> ParsedFile:
    """Parse dedented ``source`` as ``path``."""
    return parse_file(path, textwrap.dedent(source).lstrip("\n").encode())


def by_local(pf: ParsedFile) -> dict[str, Definition]:
    """Definitions keyed by dotted local name."""
    return {d.local_name: d for d in pf.definitions}


def targets(pf: ParsedFile, kind: str) -> list[tuple[str, int, int]]:
    """(target, line, scope) of the references of one kind."""
    return [(r.target, r.line, r.scope) for r in pf.references if r.kind == kind]


NESTED = """
    '''Module doc line.

    Second paragraph.'''
    import os

    LIMIT = 10


    class Outer(Base):
        '''Outer doc.'''

        colour = "outer_only_attribute"

        class Inner:
            def method(self):
                return inner_method_body_word

        def run(self):
            '''Run it.'''
            def helper(x):
                return x + helper_body_word
            return helper


    def outer():
        def inner():
            pass
        return inner
"""


def test_nested_definitions_have_parents_dotted_names_and_kinds() -> None:
    pf = parse(NESTED)
    defs = by_local(pf)
    assert list(defs) == ["Outer", "Outer.Inner", "Outer.Inner.method", "Outer.run",
                          "Outer.run.helper", "outer", "outer.inner"]
    names = [d.local_name for d in pf.definitions]
    parent_of = {d.local_name: (names[d.parent] if d.parent >= 0 else None) for d in pf.definitions}
    assert parent_of == {
        "Outer": None, "Outer.Inner": "Outer", "Outer.Inner.method": "Outer.Inner",
        "Outer.run": "Outer", "Outer.run.helper": "Outer.run", "outer": None, "outer.inner": "outer",
    }
    kinds = {k: d.kind for k, d in defs.items()}
    assert kinds == {
        "Outer": NodeKind.CLASS, "Outer.Inner": NodeKind.CLASS, "Outer.Inner.method": NodeKind.METHOD,
        "Outer.run": NodeKind.METHOD, "Outer.run.helper": NodeKind.FUNCTION,
        "outer": NodeKind.FUNCTION, "outer.inner": NodeKind.FUNCTION,
    }
    assert defs["Outer.run.helper"].name == "helper"


def test_line_ranges_docstrings_and_file_facts() -> None:
    pf = parse(NESTED)
    defs = by_local(pf)
    assert (defs["Outer"].start_line, defs["Outer"].end_line) == (9, 22)
    assert (defs["Outer.Inner.method"].start_line, defs["Outer.Inner.method"].end_line) == (15, 16)
    assert (defs["outer"].start_line, defs["outer"].end_line) == (25, 28)
    assert defs["Outer"].doc == "Outer doc."
    assert defs["Outer.run"].doc == "Run it."
    assert defs["outer"].doc == ""
    assert pf.doc == "Module doc line."
    assert pf.lines == 28
    assert pf.path == "pkg/mod.py" and pf.language == "python" and not pf.has_errors


def test_terms_of_a_class_and_its_methods_do_not_overlap() -> None:
    pf = parse(NESTED)
    defs = by_local(pf)
    outer, run, helper = defs["Outer"].terms.split(), defs["Outer.run"].terms.split(), defs["Outer.run.helper"].terms.split()
    assert "outer_only_attribute" in outer and "outer_only_attribute" not in run
    # A nested definition gives its parent only its signature line, not its body.
    assert "run" in outer and "inner_method_body_word" not in outer
    assert "inner_method_body_word" in defs["Outer.Inner.method"].terms.split()
    assert "helper" in run and "helper_body_word" not in run
    assert "helper_body_word" in helper
    assert "run" in run  # its own docstring and signature
    module = pf.module_terms.split()
    assert {"os", "limit", "module", "doc", "line", "second", "paragraph"} <= set(module)
    assert "outer_only_attribute" not in module and "helper_body_word" not in module and "outer" not in module


def test_cached_terms_equal_terms_text() -> None:
    text = "def parse_HTTPHeader(self, rawBytes): return self.HTTPServerError(x_1, the_value) # a note"
    source = text.encode()
    assert pyparse._terms(source, 0, len(source), []) == terms_text(text)


def test_async_and_decorated_definitions() -> None:
    pf = parse("""
        import pytest


        @pytest.fixture
        @app.route("/items/<id>", methods=["GET"])
        @property
        async def fetch(self):
            pass


        @decorators.cache(maxsize=None)
        class Cached:
            pass
    """)
    defs = by_local(pf)
    fetch = defs["fetch"]
    assert fetch.is_async
    assert fetch.signature == "async def fetch(self)"
    assert fetch.decorators == ("pytest.fixture", "app.route", "property")
    assert (fetch.start_line, fetch.end_line) == (4, 8)
    cached = defs["Cached"]
    assert cached.decorators == ("decorators.cache",) and not cached.is_async
    assert cached.start_line == 11


def test_signatures_are_one_line_without_colon() -> None:
    long_params = ", ".join(f"parameter_{i}: int = {i}" for i in range(30))
    pf = parse(f"""
        def fetch(url: str, *, timeout: float = 5) -> bytes:
            pass

        def multi(
            self,
            url: str,  # the address, with a comment
            *,
            retries: int = 3,
        ) -> dict[str, int]:
            pass

        class Foo(Base, metaclass=M):
            pass

        class Plain:
            pass

        def long({long_params}):
            pass
    """)
    defs = by_local(pf)
    assert defs["fetch"].signature == "def fetch(url: str, *, timeout: float = 5) -> bytes"
    assert defs["multi"].signature == "def multi(self, url: str, *, retries: int = 3) -> dict[str, int]"
    assert defs["Foo"].signature == "class Foo(Base, metaclass=M)"
    assert defs["Plain"].signature == "class Plain"
    assert len(defs["long"].signature) == pyparse.MAX_SIGNATURE
    assert defs["long"].signature.startswith("def long(parameter_0: int = 0,")


def test_bases_are_dotted_and_skip_keywords() -> None:
    pf = parse("""
        class Article(models.Model, Generic[T], mixins.Auditable, metaclass=ABCMeta):
            pass
    """)
    assert by_local(pf)["Article"].bases == ("models.Model", "Generic", "mixins.Auditable")


def test_pytest_tests_in_a_test_file() -> None:
    source = """
        def test_login():
            pass

        def helper():
            pass

        class TestCart:
            def test_add(self):
                pass

            def setup_method(self):
                pass

        class OperationTests(OperationTestBase):
            def test_create_model(self):
                pass
    """
    # unittest collects a subclass of the project's own TestCase base whatever its name: in a test file,
    # every class's test methods are tests.
    for path in ("tests/unit/cart_checks.py", "pkg/test_cart.py", "pkg/cart_test.py", "pkg/tests.py"):
        kinds = {d.local_name: d.kind for d in parse(source, path).definitions}
        assert kinds == {
            "test_login": NodeKind.TEST, "helper": NodeKind.FUNCTION, "TestCart": NodeKind.CLASS,
            "TestCart.test_add": NodeKind.TEST, "TestCart.setup_method": NodeKind.METHOD,
            "OperationTests": NodeKind.CLASS, "OperationTests.test_create_model": NodeKind.TEST,
        }, path
    kinds = {d.local_name: d.kind for d in parse(source, "pkg/cart.py").definitions}
    assert kinds["test_login"] == NodeKind.FUNCTION and kinds["TestCart.test_add"] == NodeKind.METHOD
    assert kinds["OperationTests.test_create_model"] == NodeKind.METHOD


def test_unittest_methods_are_tests_in_any_file() -> None:
    pf = parse("""
        import unittest

        class CartChecks(unittest.TestCase):
            def test_total(self):
                def test_nested():
                    pass

            def setUp(self):
                pass
    """, "pkg/checks.py")
    kinds = {d.local_name: d.kind for d in pf.definitions}
    assert kinds == {
        "CartChecks": NodeKind.CLASS, "CartChecks.test_total": NodeKind.TEST,
        "CartChecks.test_total.test_nested": NodeKind.FUNCTION, "CartChecks.setUp": NodeKind.METHOD,
    }


def test_every_import_form() -> None:
    pf = parse("""
        from __future__ import annotations
        import a.b
        import a.b as c, d
        from x import y
        from x import y as z
        from . import sibling
        from ..pkg.mod import thing
        from m import *
        from m2 import (
            first,
            second as two,
        )
        from typing import TYPE_CHECKING
        if TYPE_CHECKING:
            from heavy import Model
        try:
            import ujson as json
        except ImportError:
            import json

        def load():
            import yaml
            from .codec import decode
            return yaml
    """)
    got = [(i.module, i.name, i.alias, i.level, i.line, i.scope) for i in pf.imports]
    assert got == [
        ("__future__", "annotations", "annotations", 0, 1, -1),
        ("a.b", None, "a", 0, 2, -1),
        ("a.b", None, "c", 0, 3, -1),
        ("d", None, "d", 0, 3, -1),
        ("x", "y", "y", 0, 4, -1),
        ("x", "y", "z", 0, 5, -1),
        ("", "sibling", "sibling", 1, 6, -1),
        ("pkg.mod", "thing", "thing", 2, 7, -1),
        ("m", "*", "*", 0, 8, -1),
        ("m2", "first", "first", 0, 9, -1),
        ("m2", "second", "two", 0, 9, -1),
        ("typing", "TYPE_CHECKING", "TYPE_CHECKING", 0, 13, -1),
        ("heavy", "Model", "Model", 0, 15, -1),
        ("ujson", None, "json", 0, 17, -1),
        ("json", None, "json", 0, 19, -1),
        ("yaml", None, "yaml", 0, 22, 0),
        ("codec", "decode", "decode", 1, 23, 0),
    ]
    assert all(isinstance(i, Import) for i in pf.imports)


CALLS = """
    run_setup()

    class Service(Base):
        def handle(self, request, items):
            self.bar()
            a.b.c()
            super().save()
            items[0].f()
            make().h()
            validate(request)
            handlers[0]()
            self.registry.emit(  # spread over lines
                "done",
            )
            rows = (session
                    .query(Row))

    def route():
        register(callback=handle_request, fallback=route)
        current = SomeClass
        use(plain_value, param_like)
"""


def test_call_targets_chains_and_unknown_receivers() -> None:
    pf = parse(CALLS)
    calls = targets(pf, "call")
    handle = [d.local_name for d in pf.definitions].index("Service.handle")
    route = [d.local_name for d in pf.definitions].index("route")
    assert calls == [
        ("run_setup", 1, -1),
        ("self.bar", 5, handle),
        ("a.b.c", 6, handle),
        ("super.save", 7, handle),
        ("super", 7, handle),  # the outer call first when two start together
        ("?.f", 8, handle),
        ("?.h", 9, handle),
        ("make", 9, handle),
        ("validate", 10, handle),
        ("self.registry.emit", 12, handle),
        ("session.query", 15, handle),
        ("register", 19, route),
        ("use", 21, route),
    ]
    assert all(isinstance(r, Reference) for r in pf.references)


def test_name_references_skip_parameters_and_bases() -> None:
    pf = parse(CALLS)
    handle = [d.local_name for d in pf.definitions].index("Service.handle")
    route = [d.local_name for d in pf.definitions].index("route")
    names = targets(pf, "name")
    assert names == [
        ("Row", 16, handle),
        ("handle_request", 19, route),
        ("route", 19, route),
        ("SomeClass", 20, route),
        ("plain_value", 21, route),
        ("param_like", 21, route),
    ]
    # `request` is a parameter of handle, `Base` is a base class: neither is a name reference.
    pf = parse("""
        def wire(app, on_event):
            app.connect(on_event, self_check)
            app.connect(on_event=app.default)
    """)
    assert targets(pf, "name") == [("self_check", 2, 0)]


def test_self_attribute_passed_as_callback_is_a_name_reference() -> None:
    pf = parse("""
        class Panel:
            def build(self, widget):
                widget.bind(self.on_click)
                widget.bind(self)
    """)
    assert targets(pf, "name") == [("self.on_click", 3, 1)]


def test_syntax_error_keeps_the_good_definitions() -> None:
    pf = parse("""
        def good_before():
            return 1

        def broken(:
            pass

        class GoodAfter:
            def method(self):
                return helper()
    """)
    assert pf.has_errors
    names = {d.local_name for d in pf.definitions}
    assert {"good_before", "GoodAfter", "GoodAfter.method"} <= names
    assert ("helper", 9) in [(r.target, r.line) for r in pf.references]


def test_empty_file() -> None:
    pf = parse_file("pkg/__init__.py", b"")
    assert (pf.lines, pf.doc, pf.module_terms, pf.definitions, pf.imports, pf.references, pf.has_errors) == (
        0, "", "", (), (), (), False)


def test_file_with_only_a_docstring() -> None:
    pf = parse_file("pkg/__init__.py", b'"""\n\n  The package.  \n"""\n')
    assert pf.doc == "The package."
    assert pf.lines == 4
    assert pf.definitions == () and pf.imports == () and pf.references == ()
    assert pf.module_terms == "package"


def test_invalid_utf8_does_not_crash() -> None:
    pf = parse_file("pkg/latin.py", 'def caf\u00e9():\n    """Caf\xe9 doc."""\n    return "\xe9"\n'.encode("latin-1"))
    assert len(pf.definitions) == 1
    assert "\ufffd" in pf.definitions[0].doc


def test_grammar_and_query_are_compiled_once() -> None:
    parse("def a():\n    pass\n")
    first = pyparse.grammar()
    query, language = first.query, first.language
    parse("class B:\n    pass\n", "other.py")
    parse("import c\n", "third.py")
    again = pyparse.grammar()
    assert again is first and again.query is query and again.language is language
    assert again.parser() is first.parser()


def test_language_of_and_dispatch() -> None:
    assert language_of("pkg/mod.py") == "python"
    assert language_of("stubs/mod.pyi") == "python"
    assert language_of("README.md") is None
    assert language_of("Makefile") is None
    assert language_of("dir.py/file") is None
    with pytest.raises(ValueError, match="no extractor for language 'rust'"):
        parse_file("src/lib.rs", b"fn main() {}", "rust")


#: Edits that keep, break and mend the code around them (indentation, strings, brackets, decorators).
_EDIT_SNIPPETS = ("\n# note\n", "\n\ndef added(x):\n    return helper(x)\n", "    y = call(1)\n", "(", ")", ":", '"""',
                  "'", "\n\nclass Extra(Base):\n    pass\n", "if x:\n", "\t", "    ", "\\\n", "@wrap\n", "async ",
                  "lambda: 0", "\r\n")


def _edited(rng, source: bytes) -> bytes:
    """One random edit: a snippet inserted (anywhere, or at a line start), a span deleted or copied elsewhere."""
    pos = rng.randint(0, len(source))
    choice = rng.randint(0, 3)
    if choice == 0:
        return source[:pos] + rng.choice(_EDIT_SNIPPETS).encode() + source[pos:]
    if choice == 1:
        start = source.rfind(b"\n", 0, pos) + 1
        return source[:start] + rng.choice(_EDIT_SNIPPETS).encode() + source[start:]
    if choice == 2:
        return source[:pos] + source[pos + rng.randint(1, 80):]
    a = rng.randint(0, len(source))
    return source[:pos] + source[a:a + rng.randint(1, 120)] + source[pos:]


def test_incremental_reparse_of_edited_files_equals_a_fresh_parse() -> None:
    """A file saved again is re-parsed from its last tree; whatever the edit, the result is a fresh parse's."""
    import random
    from pathlib import Path

    rng = random.Random(5)
    sources = [p.read_bytes() for p in sorted(Path(pyparse.__file__).parent.parent.rglob("*.py"))]
    trees = pyparse.RecentTrees()
    for round_ in range(60):
        path = f"pkg/file{round_ % 7}.py"  # few paths: each is re-parsed from its previous tree many times
        source = rng.choice(sources)
        for _ in range(3):
            source = _edited(rng, source)
            assert pyparse.parse_python(path, source, trees) == pyparse.parse_python(path, source)


def test_recent_trees_keep_a_bounded_number_of_source_bytes() -> None:
    trees = pyparse.RecentTrees(max_bytes=100)
    for i in range(5):
        pyparse.parse_python(f"m{i}.py", b"x = 1\n" * 5, trees)  # 30 bytes each: the oldest go past 100
    pyparse.parse_python("big.py", b"y = 2\n" * 40, trees)  # larger than the bound: parsed, not kept
    assert [p for p in ("m0.py", "m1.py", "m2.py", "m3.py", "m4.py", "big.py") if p in trees] == ["m2.py", "m3.py", "m4.py"]
