"""Ranking signals, each measured against the same search with that one signal switched off."""

from __future__ import annotations

import pytest

from indexer.search import rerank
from indexer.search.hybrid import SearchOptions


def _without(signal: str) -> SearchOptions:
    return SearchOptions(use_dense=False, signals=tuple(s for s in rerank.SIGNALS if s != signal))


ON = SearchOptions(use_dense=False)
#: Unrelated modules, so the words of a test query are rare enough to be searched (lexical.MAX_DOC_SHARE).
FILLER = {f"misc/other_{i}.py": f"def unrelated_{i}():\n    return {i}\n" for i in range(12)}


def _paths(ws, query: str, options: SearchOptions, k: int = 10) -> list[str]:
    return [h.node.path for h in ws.search(query, top_k=k, options=options)]


def _names(ws, query: str, options: SearchOptions, k: int = 10) -> list[str]:
    return [h.node.qualname for h in ws.search(query, top_k=k, options=options)]


def test_a_file_named_like_the_query_rises(tree, workspace):
    ws = workspace(tree({
        # says both words, but is about something else
        "app/auth.py": "def sign(request):\n    '''Sign the request; see the cookie storage.'''\n    return request\n",
        "app/cookies.py": "class Jar:\n    '''Keeps what the server set, cookie by cookie.'''\n"
                          "    def set(self, name, value):\n        self.items[name] = value\n",
        **FILLER,
    }))
    ws.index()
    assert _paths(ws, "cookie storage", _without("path_match"))[0] == "app/auth.py"
    assert _paths(ws, "cookie storage", ON)[0] == "app/cookies.py"


def test_path_words_name_the_file_and_its_folder():
    assert rerank.path_words("fastapi/dependencies/utils.py") == {"dependencies", "utils"}
    assert rerank.path_words("src/flask/sansio/blueprints.py") == {"sansio", "blueprints"}
    assert rerank.path_words("pkg/__init__.py") == {"pkg"}  # a package is named by its folder


def test_a_search_shows_several_files_but_an_issue_report_keeps_the_best_file_together(tree, workspace):
    busy = "\n\n".join(f"def render_widget_{i}(widget):\n    return widget.render()\n" for i in range(8))
    ws = workspace(tree({"ui/busy.py": busy,
                         "ui/single.py": "def draw(widget):\n    return widget.render()  # render widget\n"}))
    ws.index()
    assert "ui/single.py" not in _paths(ws, "render widget", _without("saturation"), k=3)
    assert "ui/single.py" in _paths(ws, "render widget", ON, k=3)
    report = ("When I render a widget the output is wrong. " * 3).strip()  # long: reads as an issue report
    assert rerank.is_search_like("render widget") and not rerank.is_search_like(report)
    assert _paths(ws, report, ON, k=3) == _paths(ws, report, _without("saturation"), k=3)


def test_a_symbol_lookup_puts_the_definition_first_and_minds_the_case(tree, workspace):
    uses = "\n\n".join(f"def use_{i}(s: Session) -> Session:\n    return Session.merge(s, Session())\n"
                       for i in range(4))
    ws = workspace(tree({
        "net/sessions.py": "class Session:\n    '''A connection pool.'''\n\n\n"
                           "def session():\n    '''Make a Session.'''\n    return Session()\n",
        "net/uses.py": uses, **FILLER,
    }))
    ws.index()
    assert _names(ws, "Session", ON)[0] == "sessions.Session"
    assert _names(ws, "session", ON)[0] == "sessions.session"
    # a plain lower-case word is a topic, not a name looked up
    assert [rerank.is_symbol_query(q) for q in ("session", "Session", "field_validator", "Session.send", "two words")] \
        == [False, True, True, True, False]
    assert _names(ws, "Session", _without("definitions"))[0] != "sessions.Session"


def test_old_copies_under_a_version_folder_rank_below_the_current_code(tree, workspace):
    old = "class Model:\n    '''Model fields are validated here, model by model, field by field.'''\n"
    new = "class Model:\n    '''Model fields.'''\n"
    ws = workspace(tree({"lib/v1/main.py": old, "lib/main.py": new,
                         "api/v1/users.py": "def list_model_fields():\n    return []\n"}))
    ws.index()
    assert _paths(ws, "model fields", _without("legacy"))[0] == "lib/v1/main.py"
    ranked = _paths(ws, "model fields", ON)
    assert ranked.index("lib/main.py") < ranked.index("lib/v1/main.py")
    # a version folder with no newer copy beside it is the current code
    assert rerank.newer_copies("api/v1/users.py") == ["api/users.py", "api/v2/users.py"]
    conn = ws.reader()
    info = {1: rerank.CandidateInfo(1, "function", "f", "f", "api/v1/users.py"),
            2: rerank.CandidateInfo(2, "function", "g", "g", "lib/deprecated/x.py")}
    existing = lambda paths: {r[0] for r in conn.execute("SELECT path FROM files")} & paths
    assert rerank.demote_legacy({1: 1.0, 2: 1.0}, info, existing) == {1: 1.0, 2: rerank.DEMOTION}


def test_a_file_with_many_hits_lifts_its_best_node():
    info = {i: rerank.CandidateInfo(i, "function", f"f{i}", f"f{i}", "a.py" if i < 4 else "b.py") for i in range(5)}
    scores = {0: 0.7, 1: 0.7, 2: 0.7, 3: 0.7, 4: 0.9}
    out = rerank.boost_file_cohesion(scores, info, "find the thing")
    assert out[0] > out[4]  # a.py sums 2.8 against b.py's 0.9
    assert out[1] == out[2] == out[3] == 0.7  # only the best node of a file is lifted
    assert out[4] > scores[4]


def test_a_file_a_search_names_joins_even_when_its_words_are_everywhere(tree, workspace):
    # "field" is in every module, so BM25 alone ranks the one rare word's match first
    files = {f"lib/part_{i}.py": f"def part_{i}(field):\n    return field\n" for i in range(6)}
    files["lib/fields.py"] = "class Spec:\n    '''What a model declares.'''\n"
    files["lib/constraints.py"] = "def constrained(field):\n    '''A constrained field.'''\n    return field\n"
    ws = workspace(tree(files))
    ws.index()
    assert "lib/fields.py" not in _paths(ws, "fields constrained", _without("path_match"))[:2]
    assert "lib/fields.py" in _paths(ws, "fields constrained", ON)[:2]


def test_a_folder_every_file_sits_in_names_none_of_them():
    names = rerank.FileNames.of([f"flask/{n}.py" for n in ("app", "blueprints", "ctx", "sessions", "helpers")]
                                + ["flask/json/provider.py"], lambda words: [w.rstrip("s") for w in words])
    assert "flask" in names.common
    assert names.words("flask/sessions.py") == {"sessions"}
    assert names.words("flask/json/provider.py") == {"json", "provider"}
    match = names.match({"session": "session", "flask": "flask"})
    assert match.ratio("flask/sessions.py") == 0.5 and match.files_at_least(0.5) == ["flask/sessions.py"]
    assert names.match({"authentication": "authent"}).named == (frozenset(),)
    assert names.match({"pro": "pro", "providers": "provid"}).named == (frozenset(), frozenset({"provider"}))


def test_an_issue_report_lifts_every_hit_of_a_busy_file_in_its_order():
    info = {i: rerank.CandidateInfo(i, "function", f"f{i}", f"f{i}", "a.py" if i < 3 else "b.py") for i in range(4)}
    scores = {0: 0.5, 1: 0.4, 2: 0.3, 3: 0.55}
    report = "After upgrading, saving a model with a custom field raises an error in the admin form view."
    out = rerank.boost_file_cohesion(scores, info, report)
    assert out[0] > out[1] > out[2] and out[0] > out[3]  # each of a.py's three hits gains, the order kept
    assert out[3] == scores[3]  # b.py has one hit


def test_tests_and_generated_migrations_rank_below_the_code_unless_tests_are_asked_for():
    paths = ["shop/models.py", "shop/migrations/0001_initial.py", "shop/migrations/utils.py", "tests/test_shop.py"]
    info = {i: rerank.CandidateInfo(i, "class", "Order", "Order", p) for i, p in enumerate(paths)}
    scores = {i: 1.0 for i in info}
    assert rerank.demote_peripheral(scores, info, "order total field") == {
        0: 1.0, 1: rerank.DEMOTION, 2: 1.0, 3: rerank.DEMOTION}
    assert rerank.demote_peripheral(scores, info, "order tests") == scores


def test_a_packages_test_support_ranks_as_code_and_a_top_test_folder_as_tests():
    paths = ["django/test/client.py", "numpy/testing/utils.py", "test/helpers.py", "testing/conftest.py",
             "pkg/tests/helpers.py", "pkg/tests.py"]
    info = {i: rerank.CandidateInfo(i, "class", "Client", "Client", p) for i, p in enumerate(paths)}
    out = rerank.demote_peripheral({i: 1.0 for i in info}, info, "client follows redirects")
    assert out == {0: 1.0, 1: 1.0, 2: rerank.DEMOTION, 3: rerank.DEMOTION, 4: rerank.DEMOTION, 5: rerank.DEMOTION}


@pytest.mark.parametrize("path", ["vendor/six.py", "pkg/vendored/six.py", "pip/_vendor/requests/api.py",
                                  "third_party/x.py"])
def test_vendored_copies_rank_below_the_project_code(path):
    info = {0: rerank.CandidateInfo(0, "function", "get", "get", "pkg/api.py"),
            1: rerank.CandidateInfo(1, "function", "get", "get", path)}
    assert rerank.demote_peripheral({0: 1.0, 1: 1.0}, info, "send a get request") == {0: 1.0, 1: rerank.DEMOTION}


def test_a_folder_only_named_like_vendor_is_not_vendored():
    info = {0: rerank.CandidateInfo(0, "function", "get", "get", "pkg/vendors/api.py")}
    assert rerank.demote_peripheral({0: 1.0}, info, "send a get request") == {0: 1.0}


def test_a_bundle_folder_is_a_packages_or_extern_folder_inside_a_package():
    assert rerank.bundle_dir("requests/packages/urllib3/util/retry.py") == ("requests/packages", "requests")
    assert rerank.bundle_dir("pkg/sub/extern/six.py") == ("pkg/sub/extern", "pkg/sub")
    assert rerank.bundle_dir("packages/web/app.py") is None  # a monorepo's packages: the project itself
    assert rerank.bundle_dir("shop/packaging.py") is None


#: One function both bundle tests search for, in a vendored copy or in the project's own packages/ folder.
_ENCODER = ("def encode_order_total(order_total):\n    '''Encode the order total as json.'''\n"
            "    return str(order_total)  # order total json\n")
_ENCODE = "encode order total json"


def test_a_bundled_package_that_never_imports_its_host_ranks_below_the_host_code(tree, workspace):
    """requests kept a copy of urllib3 in ``requests/packages/``: it imports nothing of requests, and its
    timeout classes outranked the adapter a report about timeouts was about."""
    vendored = {
        "shop/__init__.py": "",
        "shop/packages/__init__.py": "from . import fastjson\n",
        "shop/packages/fastjson/__init__.py": "from .encoder import encode_order_total\n",
        "shop/packages/fastjson/encoder.py": _ENCODER,
        "shop/orders.py": "from shop.packages import fastjson\n\n\n"
                          "def send_order(order, total):\n    return fastjson.encode_order_total(total)\n",
        **FILLER,
    }
    ws = workspace(tree(vendored))
    ws.index()
    assert _paths(ws, _ENCODE, _without("peripheral"))[0] == "shop/packages/fastjson/encoder.py"
    ranked = _paths(ws, _ENCODE, ON)
    assert ranked.index("shop/orders.py") < ranked.index("shop/packages/fastjson/encoder.py")


def test_a_packages_folder_that_imports_its_host_is_the_projects_own_code(tree, workspace):
    own = {
        "shop/__init__.py": "",
        "shop/packages/__init__.py": "",
        "shop/models.py": "class Order:\n    pass\n",
        "shop/packages/encoder.py": "from shop.models import Order\n\n\n" + _ENCODER,
        "shop/orders.py": "from shop.packages.encoder import encode_order_total\n\n\n"
                          "def send_order(order, total):\n    return encode_order_total(total)\n",
        **FILLER,
    }
    ws = workspace(tree(own))
    ws.index()
    assert _paths(ws, _ENCODE, ON) == _paths(ws, _ENCODE, _without("peripheral"))
    assert _paths(ws, _ENCODE, ON)[0] == "shop/packages/encoder.py"


def test_vectors_weigh_more_in_a_search_than_in_an_issue_report(tree, workspace):
    """A search-box query leans on the embedding more than a long report, whose many words overlap the code."""
    from indexer import sqlite
    from indexer.search.hybrid import REPORT_ALPHA, SEARCH_ALPHA, ranked_ids

    ws = workspace(tree({"net/retry.py": "def retry_request():\n    pass\n",
                         "net/pool.py": "def reuse_connections():\n    pass\n", **FILLER}))
    ws.index()
    ids = {h.node.name: h.node.id for q in ("retry request", "reuse connections")
           for h in ws.search(q, top_k=50, options=ON)}
    lexical_only, dense_only = ids["retry_request"], ids["reuse_connections"]

    def dense(query: str, k: int) -> list[tuple[int, float]]:  # the embedding prefers the pool
        return [(dense_only, 0.9), (lexical_only, 0.2)]

    search = "retry request"
    report = "retry request " + " ".join(f"word{i}" for i in range(20))  # a long issue report
    assert SEARCH_ALPHA < REPORT_ALPHA
    conn = sqlite.connect(ws.db_path, readonly=True)
    try:
        for query, alpha in ((search, SEARCH_ALPHA), (report, REPORT_ALPHA)):
            scores = {i: s for i, s, _ in ranked_ids(conn, query, dense=dense, options=SearchOptions(signals=()))}
            assert scores[dense_only] == pytest.approx(1 - alpha)  # no lexical match: the dense share alone
            assert scores[lexical_only] == pytest.approx(alpha)  # the best BM25 hit, the embedding's least similar
        forced = {i: s for i, s, _ in ranked_ids(conn, report, dense=dense, options=SearchOptions(alpha=0.5, signals=()))}
        assert forced[dense_only] == pytest.approx(0.5)
    finally:
        conn.close()


def test_an_issue_report_weighs_a_long_function_above_a_short_one_with_as_many_hits():
    info = {0: rerank.CandidateInfo(0, "function", "helper", "helper", "a.py", lines=3),
            1: rerank.CandidateInfo(1, "method", "Form.clean", "clean", "a.py", lines=60),
            2: rerank.CandidateInfo(2, "class", "Form", "Form", "a.py", lines=300)}
    scores = {0: 1.0, 1: 1.0, 2: 1.0}
    report = "After upgrading, saving a model with a custom field raises an error in the admin form view."
    out = rerank.prefer_long_functions(scores, info, report)
    assert out[1] > scores[1] and out[0] == scores[0]  # a short helper keeps its score
    assert out[2] == scores[2]  # a class spans its methods: its length says nothing of its own code
    assert rerank.prefer_long_functions(scores, info, "clean form") == scores  # a search is left alone


def test_the_size_signal_reaches_the_ranking_of_an_issue_report(tree, workspace):
    body = "\n".join(f"    step_{i} = compute_{i}(form)" for i in range(40))
    ws = workspace(tree({
        "forms/short.py": "def tidy(form):\n    return form.cleaned_widget_choices\n",
        "forms/long.py": f"def validate(form):\n    choices = form.cleaned_widget_choices\n{body}\n"
                         "    widget = form.cleaned_widget_choices[0]\n    return choices, widget\n",
        **FILLER,
    }))
    ws.index()
    report = "The cleaned widget choices of a form come out empty after the upgrade, and saving it fails."
    # The 44-line function's few hits rank it below the short module's; the size signal lifts it past the
    # module (which keeps its score), not past the short function that says the words as often.
    assert _names(ws, report, _without("size"), k=3) == ["short.tidy", "short", "long.validate"]
    assert _names(ws, report, ON, k=3) == ["short.tidy", "long.validate", "short"]


def test_the_module_of_an_empty_file_is_never_a_hit(tree, workspace):
    """An empty ``__init__.py`` is a document of its path's words alone: BM25 ranked it above real code."""
    ws = workspace(tree({"tools/bulk_create/__init__.py": "", "tools/__init__.py": "",
                         "tools/bulk_create/ops.py": "def insert_rows(rows):\n    return len(rows)\n",
                         "tools/batch.py": "def bulk_create(items):\n    \"\"\"Create many items at once.\"\"\"\n"
                                           "    return [create(i) for i in items]\n", **FILLER}))
    ws.index()
    for query in ("bulk create", "bulk_create", "tools.bulk_create"):
        paths = [h.node.path for h in ws.search(query, top_k=20)]
        assert "tools/bulk_create/__init__.py" not in paths, (query, paths)
        assert "tools/batch.py" in paths[:3]
    assert ws.node("tools/bulk_create/__init__.py").kind.value == "module"  # still in the graph


def test_a_query_that_is_a_path_finds_that_file_first(tree, workspace):
    ws = workspace(tree({"app/models/query.py": "def run_query(sql):\n    return sql\n",
                         "app/sql/query.py": "class Query:\n    \"\"\"A query of the models, as SQL.\"\"\"\n",
                         "app/models/__init__.py": "from app.models.query import run_query\n", **FILLER}))
    ws.index()
    for query in ("app/models/query.py", "./app/sql/query.py"):
        first = ws.search(query, top_k=5)[0]
        assert (first.node.path, first.node.kind.value) == (query.removeprefix("./"), "module")
    assert ws.search("app/models/nothing.py", top_k=5)  # not a file: an ordinary search


def test_hits_that_matched_no_word_of_the_query_carry_a_note():
    from indexer.types import Node, NodeKind, SearchHit, vector_only_note

    node = Node(id=1, kind=NodeKind.FUNCTION, name="f", qualname="m.f", path="m.py", start_line=1, end_line=2)
    assert vector_only_note([SearchHit(node, 0.2, why="vector"), SearchHit(node, 0.1, why="vector+graph")])
    assert vector_only_note([SearchHit(node, 0.9, why="bm25+vector"), SearchHit(node, 0.2, why="vector")]) is None
    assert vector_only_note([]) is None  # no hits say so themselves
