"""Budgeted context through the whole pipeline: random workspaces, queries, focuses, tasks and budgets."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import write_tree

from indexer import tokens
from indexer.context.packer import pack
from indexer.context.render import SourceCache, SourceLines, module_summary, summary_text
from indexer.events import UnknownTask
from indexer.graph.query import UnknownTarget
from indexer.tokens import Cl100k
from indexer.types import Tier
from indexer.workspace import Workspace

WORDS = ["parse", "header", "invoice", "total", "render", "cache", "token", "budget", "user", "order",
         "price", "tax", "report", "queue", "retry", "socket", "stream", "config", "loader", "merge"]


def _random_workspace(root: Path, seed: int) -> None:
    """A package of modules whose functions and classes call each other across modules."""
    rng = random.Random(seed)
    modules = [f"mod_{i}" for i in range(rng.randint(3, 6))]
    (root / "pkg").mkdir(parents=True)
    (root / "pkg" / "__init__.py").write_text('"""A generated package."""\n')
    defined: list[tuple[str, str]] = []
    for module in modules:
        lines = [f'"""Module {module} about {rng.choice(WORDS)} and {rng.choice(WORDS)}."""']
        for other, fn in rng.sample(defined, k=min(len(defined), 2)):
            lines.append(f"from pkg.{other} import {fn}")
        for j in range(rng.randint(2, 5)):
            name = f"{rng.choice(WORDS)}_{rng.choice(WORDS)}_{j}"
            body = [f'    """Compute the {rng.choice(WORDS)} of a {rng.choice(WORDS)}."""']
            body += [f"    value = {rng.randint(1, 99)} * len(items)" for _ in range(rng.randint(1, 30))]
            calls = [fn for m, fn in defined if f"import {fn}" in "\n".join(lines)]
            if calls:
                body.append(f"    value += {rng.choice(calls)}(items)")
            body.append("    return value")
            lines += ["", "", f"def {name}(items):", *body]
            defined.append((module, name))
        lines += ["", "", f"class {rng.choice(WORDS).title()}{rng.choice(WORDS).title()}:",
                  '    """A class."""', "    def run(self, items):",
                  f"        return {defined[-1][1]}(items)"]
        (root / "pkg" / f"{module}.py").write_text("\n".join(lines) + "\n")
    tests = ["from pkg.%s import %s" % defined[0], "", "", f"def test_{defined[0][1]}():",
             f"    assert {defined[0][1]}([1]) > 0"]
    (root / "tests").mkdir()
    (root / "tests" / "test_pkg.py").write_text("\n".join(tests) + "\n")


@pytest.fixture(scope="module")
def workspaces(tmp_path_factory):
    out = []
    for seed in range(3):
        root = tmp_path_factory.mktemp(f"ws{seed}")
        _random_workspace(root / "src", seed)
        ws = Workspace(root / "src", index_dir=root / "idx")
        ws.index()
        ws.record("T1", "task_started", {"title": "fix the invoice total", "query": "invoice total"})
        ws.record("T1", "error", {"message": "ValueError: bad total",
                                  "traceback": 'Traceback (most recent call last):\n'
                                               f'  File "{root / "src" / "pkg" / "mod_0.py"}", line 5, in f\n'
                                               "ValueError: bad total\n"})
        ws.record("T1", "iteration", {"summary": "tried rounding", "outcome": "failure"})
        paths = [r[0] for r in ws.reader().execute("SELECT path FROM files ORDER BY path")]
        symbols = [r[0] for r in ws.reader().execute(
            "SELECT qualname FROM nodes WHERE kind != 'library' ORDER BY qualname")]
        out.append((ws, paths, symbols))
    yield out
    for ws, _, _ in out:
        ws.close()


def _check_packing(packed, budget: int) -> None:
    assert tokens.count(packed.text) == packed.tokens <= budget
    kept_tiers = [i.tier for i in packed.items]
    for dropped in packed.dropped:
        # Nothing of a lower priority is kept once an item of some tier had to go.
        assert all(t <= dropped.tier for t in kept_tiers), (dropped, kept_tiers)
    for item in packed.items:
        assert _cited(item, packed.text) if item.path else True


def _cited(item, text: str) -> bool:
    """An agent can cite the item: a block header ``path:start-end``, or a line of the path's outline."""
    if item.level != "signature":
        return f"### {item.path}:{item.start_line}-{item.end_line} " in text
    outline = text.split(f"### {item.path} [signatures]\n", 1)[-1].split("\n\n", 1)[0]
    return f"### {item.path} [signatures]" in text and any(
        line.startswith(f"{item.start_line}-{item.end_line} ") for line in outline.splitlines())


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_context_never_exceeds_budget_and_respects_tiers(workspaces, data):
    ws, paths, symbols = data.draw(st.sampled_from(workspaces))
    budget = data.draw(st.one_of(st.integers(1, 400), st.integers(400, 8_000), st.integers(8_000, 200_000)))
    query = data.draw(st.one_of(st.none(), st.lists(st.sampled_from(WORDS), min_size=1, max_size=6).map(" ".join)))
    focus = data.draw(st.one_of(st.none(), st.sampled_from(paths), st.sampled_from(symbols),
                                st.sampled_from(paths).map(lambda p: f"{p}:1")))
    task = data.draw(st.sampled_from([None, "T1"]))
    if not (query or focus or task):
        query = "invoice"
    packed = ws.context(query, focus=focus, task_id=task, budget=budget)
    _check_packing(packed, budget)
    if task and budget >= 200:
        # The task itself is CRITICAL: with any room at all it is packed.
        assert any(i.kind == "task" for i in packed.items)


def test_large_budget_keeps_critical_items_at_full_detail(workspaces):
    ws, paths, _ = workspaces[0]
    packed = ws.context("invoice total", focus="pkg/mod_0.py:5", task_id="T1", budget=50_000)
    critical = [i for i in packed.items if i.tier == Tier.CRITICAL]
    assert {"task", "error"} <= {i.kind for i in critical}
    assert all(i.level in ("full", "summary", "module") for i in critical)
    assert not [d for d in packed.dropped if d.tier == Tier.CRITICAL]


def test_small_budget_degrades_before_dropping(workspaces):
    ws, _, symbols = workspaces[1]
    target = next(s for s in symbols if s.count(".") == 2 and "_" in s.rsplit(".", 1)[-1])
    rich = ws.context(focus=target, budget=50_000)
    focus_rich = next(i for i in rich.items if i.name == target)
    assert focus_rich.level == "full"
    tight = ws.context(focus=target, budget=max(focus_rich.tokens - 5, 1))
    levels = [i.level for i in tight.items if i.name == target]
    assert levels and levels[0] != "full"  # same item, poorer level, still there


def test_profiles_and_explicit_budget(workspaces):
    ws, _, _ = workspaces[0]
    assert ws.context("invoice", profile="ollama-4k").budget == 2048
    assert ws.context("invoice", profile="qwen3-8b-32k", budget=300).budget == 300
    with pytest.raises(ValueError, match="unknown model profile"):
        ws.context("invoice", profile="gpt-17")
    with pytest.raises(ValueError, match="budget"):
        ws.context("invoice", budget=0)


def test_bad_focus_and_task_are_clear_errors(workspaces):
    ws, _, _ = workspaces[0]
    with pytest.raises(UnknownTarget, match="no node matches"):
        ws.context(focus="no.such.symbol")
    with pytest.raises(UnknownTarget, match="outside the workspace"):
        ws.context(focus="/etc/passwd")
    with pytest.raises(UnknownTask):
        ws.context("x", task_id="never-started")


def test_error_frames_bring_their_code(workspaces):
    ws, _, _ = workspaces[0]
    packed = ws.context(task_id="T1", budget=4000)
    whys = [i.why for i in packed.items]
    assert any(w.startswith("error points at pkg/mod_0.py:5") for w in whys), whys


def test_error_frames_keep_their_function_names_whole(tmp_path):
    root = write_tree(tmp_path / "ws", {"app/auth.py": "def login(user):\n    return user.name\n"})
    with Workspace(root, index_dir=tmp_path / "idx") as ws:
        ws.index()
        ws.record("T", "task_started", {"title": "login fails"})
        ws.record("T", "error", {"message": "AttributeError: name", "traceback": (
            "Traceback (most recent call last):\n"
            f'  File "{root / "app" / "auth.py"}", line 2, in login\n'
            "AttributeError: name\n")})
        text = ws.context(task_id="T", budget=2000).text
        assert "  at app/auth.py:2 in login\n" in text + "\n", text  # not "in log": a suffix strip ate the name


def _assembled(ws: Workspace, ranked_names: list[str], budget: int):
    """Candidates the assembler offers for search hits in this order (scores falling), by qualified name."""
    from indexer.context.assemble import Assembler, Request

    conn = ws.reader()
    ids = dict(conn.execute("SELECT qualname, id FROM nodes"))
    ranked = [(ids[name], 10.0 - i * 0.1, "test") for i, name in enumerate(ranked_names)]
    cands = Assembler(conn, SourceCache(conn, SourceLines())).candidates(Request("q", [], None, ranked, budget))
    return {c.name: c for c in cands}


def test_past_the_first_hits_a_long_body_gives_way_to_breadth(tmp_path):
    """From MEDIUM down a body over a tenth of the budget is offered from its summary; graph neighbours are one line."""
    small = [f"def small_{i}():\n    return helper()\n" for i in range(8)]
    big = "def big():\n" + "".join(f"    value_{i} = compute({i}, 'a longer line of code')\n" for i in range(60))
    (tmp_path / "app.py").write_text("def helper():\n    return 1\n\n\n" + "\n\n".join(small) + "\n\n" + big)
    with Workspace(tmp_path, index_dir=tmp_path / ".idx") as ws:
        ws.index()
        big_tokens = tokens.count(big)
        assert 400 < big_tokens < 0.35 * 4000  # over the MEDIUM share, under the HIGH one
        early = _assembled(ws, ["app.big", *(f"app.small_{i}" for i in range(8))], 4000)
        late = _assembled(ws, [*(f"app.small_{i}" for i in range(8)), "app.big"], 4000)
        first, medium = early["app.big"].renderings[0], late["app.big"].renderings[0]
        assert early["app.big"].tier == Tier.CRITICAL and first.level == "full" and first.max_tokens == 1400
        assert late["app.big"].tier == Tier.MEDIUM and medium.level == "full" and medium.max_tokens == 400
        packed = {i.name: i.level for i in pack(list(late.values()), 4000, Cl100k()).items}
        assert packed["app.big"] == "summary"  # the body would have fitted the room, not the share
        assert {i.name: i.level for i in pack(list(early.values()), 4000, Cl100k()).items}["app.big"] == "full"
        neighbour = late["app.helper"]  # called by every hit, never a hit itself
        assert neighbour.tier == Tier.LOW and [r.level for r in neighbour.renderings] == ["signature"]


def test_a_focus_gets_its_code_and_a_module_too_long_to_list_cuts_nothing(tmp_path):
    """A function in focus comes with its full code while it takes at most 3/4 of the budget; its module's
    listing, too long for the room, comes as one line instead of cutting the tiers below it; a file in
    focus is packed once, then its own definitions' code."""
    bodies = ["def step_%d(x):\n    \"\"\"Step %d.\"\"\"\n" % (i, i)
              + "".join(f"    x = x + {j}  # one step of the pipeline\n" for j in range(40)) + "    return x\n"
              for i in range(30)]
    write_tree(tmp_path, {"pipe.py": "\n\n".join(bodies), "use.py": "from pipe import step_3\n\n\n"
                          "def run():\n    return step_3(1)\n"})
    with Workspace(tmp_path, index_dir=tmp_path / ".idx") as ws:
        ws.index()
        body = next(i.tokens for i in ws.context(focus="pipe.step_3", budget=100_000).items
                    if i.name == "pipe.step_3" and i.level == "full")
        budget = int(body / 0.6)  # the body is 60% of it: over the CRITICAL share of any hit (35%)
        assert tokens.count(module_summary(ws.reader(), "pipe.py")) > budget - body
        packed = ws.context(focus="pipe.step_3", budget=budget)
        levels = {(i.name, i.level) for i in packed.items}
        assert ("pipe.step_3", "full") in levels and ("pipe", "signature") in levels
        assert not any(d.reason == "tier_cut" for d in packed.dropped)
        assert "use.run" in {i.name for i in packed.items}  # the caller, below the module's tier

        whole = ws.context(focus="use.py", budget=2000)
        assert [i.name for i in whole.items].count("use") == 1
        assert ("use.run", "full") in {(i.name, i.level) for i in whole.items}
        assert "return step_3(1)" in whole.text


def test_the_listing_of_a_focus_file_takes_at_most_a_tenth_of_the_budget(tmp_path):
    """A test in focus does not need the signatures of the 80 tests beside it: its file's listing, over a tenth of
    the budget, comes as one line and leaves the room to the code the test calls."""
    tests = "".join(f"def test_case_{i}(client):\n    assert check_{i % 3}(client)\n\n\n" for i in range(80))
    write_tree(tmp_path, {"tests/test_many.py": "from app import check_0, check_1, check_2\n\n\n" + tests,
                          "app.py": "".join(f"def check_{i}(c):\n    return c is not None\n\n\n" for i in range(3))})
    with Workspace(tmp_path, index_dir=tmp_path / ".idx") as ws:
        ws.index()
        listing = tokens.count(module_summary(ws.reader(), "tests/test_many.py"))
        budget = 1500
        assert listing > budget / 10
        packed = ws.context(focus="test_many.test_case_4", budget=budget)
        module = next(i for i in packed.items if i.why.startswith("module of focus"))
        assert module.level == "signature" and module.tokens <= budget / 10
        assert "app.check_1" in {i.name for i in packed.items}


def test_a_class_shown_without_its_members_bodies_keeps_their_decorators(tmp_path):
    write_tree(tmp_path, {"resp.py": (
        "class Response:\n"
        "    @property\n"
        "    def ok(self) -> bool:\n"
        "        return self.status < 400\n"
        "\n"
        "    @staticmethod\n"
        "    @cache(\n"
        "        size=3,\n"
        "    )\n"
        "    def parse(text):\n"
        "        return text\n")})
    with Workspace(tmp_path, index_dir=tmp_path / ".idx") as ws:
        ws.index()
        [cls] = ws.nodes("resp.Response")
        shown = SourceCache(ws.reader()).own_code(cls)
    assert shown == ("class Response:\n"
                     "    @property\n"
                     "    def ok(self) -> bool: ...\n"
                     "\n"
                     "    @staticmethod\n"
                     "    @cache(\n"
                     "        size=3,\n"
                     "    )\n"
                     "    def parse(text): ...")


def test_a_task_brings_its_failing_tests_code_and_the_files_it_opened(tmp_path):
    """The task summary named the failing test; the context had neither its code nor the file opened."""
    write_tree(tmp_path, {
        "pkg/__init__.py": "",
        "pkg/core.py": "def run(x):\n    return x.upper()\n",
        "pkg/notes.py": "def jot(text):\n    \"\"\"Keep a note.\"\"\"\n    return text\n",
        "tests/test_core.py": "from pkg.core import run\n\n\nclass TestRun:\n    def test_shouts(self):\n"
                              "        assert run('a') == 'A!'\n",
    })
    with Workspace(tmp_path, index_dir=tmp_path / ".idx") as ws:
        ws.index()
        ws.record("T", "task_started", {"title": "make it louder"})
        ws.record("T", "file_opened", {"path": "pkg/notes.py"})
        ws.record("T", "test_result", {"test": "tests/test_core.py::TestRun::test_shouts[a]", "passed": False})
        packed = ws.context(task_id="T", budget=600)
        by_name = {i.name: i for i in packed.items}
        assert by_name["test_core.TestRun.test_shouts"].level == "full"  # tests/ has no __init__.py
        assert "assert run('a') == 'A!'" in packed.text
        assert "pkg.notes" in by_name and by_name["pkg.notes"].why == "opened in this task"


def test_a_resolved_error_is_one_line_of_history_and_iterations_of_one_number_both_come(tmp_path):
    write_tree(tmp_path, {"pkg/__init__.py": "", "pkg/core.py": "def run(x):\n    return x.upper()\n",
                          "tests/test_core.py": "from pkg.core import run\n\n\ndef test_run():\n    assert run('a')\n"})
    trace = 'Traceback (most recent call last):\n  File "pkg/core.py", line 2, in run\nAttributeError: no upper\n'
    with Workspace(tmp_path, index_dir=tmp_path / ".idx") as ws:
        ws.index()
        ws.record("T", "task_started", {"title": "t"})
        ws.record("T", "test_result", {"test": f"{tmp_path}/tests/test_core.py::test_run", "passed": False})
        ws.record("T", "error", {"traceback": trace})
        before = {i.why: i for i in ws.context(task_id="T", budget=2000).items}
        assert before["latest error of the task"].tier.name == "CRITICAL" and "error points at pkg/core.py:2" in before
        assert "failing test tests/test_core.py::test_run" in before  # an absolute test id names its file
        ws.record("T", "note", {"text": "upper() needs a str"})
        ws.record("T", "iteration", {"n": 2, "summary": "first try"})
        ws.record("T", "iteration", {"n": 2, "summary": "second try", "outcome": "success"})
        ws.record("T", "test_result", {"test": "tests/test_core.py::test_run", "passed": True})
        packed = ws.context(task_id="T", budget=2000)
        after = {i.why: i for i in packed.items}
        assert after["the task's latest error, resolved since"].tier.name == "LOW"
        assert "Resolved error: AttributeError: no upper" in packed.text
        assert "error points at pkg/core.py:2" not in after
        assert "Iteration 2: first try" in packed.text and "Iteration 2: second try -> success" in packed.text
        assert "Note: upper() needs a str" in packed.text  # the agent's own note comes back with the task


def test_code_of_a_file_with_a_byte_order_mark_is_shown_without_it(tmp_path):
    (tmp_path / "bom.py").write_bytes(b"\xef\xbb\xbfdef first():\n    return 1\n")
    with Workspace(tmp_path, index_dir=tmp_path / ".idx") as ws:
        ws.index()
        first = ws.node("bom.first")
        assert (first.start_line, first.end_line) == (1, 2)
        text = ws.context(focus="bom.first", budget=300).text
        assert "def first():\n    return 1" in text and "\ufeff" not in text


def test_a_file_with_old_mac_line_ends_is_parsed_line_by_line(tmp_path):
    """Python ends a line at a lone CR; tree-sitter did not, and saw one line with a syntax error."""
    (tmp_path / "mac.py").write_bytes(b"def a():\r    return 1\r\rdef b():\r    return 2\r")
    with Workspace(tmp_path, index_dir=tmp_path / ".idx") as ws:
        ws.index()
        assert "mac.py" not in {s["path"] for s in ws.status()["skipped"]}  # no syntax error
        assert [(n.start_line, n.end_line) for n in (ws.node("mac.a"), ws.node("mac.b"))] == [(1, 2), (4, 5)]
        assert "def b():\n    return 2" in ws.context(focus="mac.b", budget=200).text


def test_a_line_in_focus_inside_a_long_function_comes_with_the_lines_around_it(tmp_path):
    body = "".join(f"    step_{i} = compute({i}, 'a longer line of the pipeline')\n" for i in range(200))
    write_tree(tmp_path, {"pipe.py": "def run():\n" + body + "    return step_0\n"})
    with Workspace(tmp_path, index_dir=tmp_path / ".idx") as ws:
        ws.index()
        packed = ws.context(focus="pipe.py:150", budget=1000)  # the body is ~3,000 tokens
        item = packed.items[0]
        assert (item.name, item.level) == ("pipe.run", "excerpt") and item.tokens <= 750
        assert "step_148 = compute(148" in packed.text  # line 150 of the file
        first, last = (int(x) for x in packed.text.split("# lines ")[1].split(" ")[0].split("-"))
        assert first < 150 < last and (first, last) != (1, 202)
        assert ws.context(focus="pipe.run", budget=1000).items[0].level == "summary"  # no line: no excerpt
        assert ws.context(focus="pipe.py:150", budget=8000).items[0].level == "full"  # it fits: all of it


def test_code_after_a_form_feed_or_crlf_is_the_nodes_own_lines(tmp_path):
    """Lines are numbered as the parser numbers them: a form feed (Emacs page break) is not a line break."""
    (tmp_path / "paged.py").write_bytes(b"def first():\r\n    return 1\r\n\x0c\r\ndef second():\r\n    return 2\r\n")
    with Workspace(tmp_path, index_dir=tmp_path / ".idx") as ws:
        ws.index()
        conn = ws.reader()
        source = SourceCache(conn, SourceLines())
        second = ws.node("paged.second")
        assert (second.start_line, second.end_line) == (4, 5)
        assert source.code(second) == "def second():\n    return 2"
        module = ws.node("paged.py")
        assert source.own_code(module) == "def first(): ...\n\x0c\ndef second(): ..."


def test_a_summary_names_each_link_once_and_code_callers_before_tests(tree, workspace):
    root = tree({
        "pkg/__init__.py": "",
        "pkg/a.py": "class A:\n    def append(self, x):\n        pass\n",
        "pkg/b.py": "class B:\n    def append(self, x):\n        pass\n",
        "pkg/core.py": "def build(items):\n    out = []\n    out.append(1)\n    out.append(2)\n    return out\n\n\n"
                       "def use():\n    return build([])\n",
        "tests/test_core.py": "from pkg.core import build\n\n\n"
                              + "".join(f"def test_{c}():\n    build([])\n\n\n" for c in "abcde"),
    })
    ws = workspace(root)
    ws.index()
    lines = summary_text(ws.reader(), ws.node("pkg/core.py:2")).splitlines()
    links = {line.split(":", 1)[0].strip("# "): line.split(":", 1)[1].strip().split(", ") for line in lines[1:]}
    assert links["calls"] == ["append"]  # one name, though it resolves to A.append and B.append
    assert links["called by"][0] == "core.use" and len(links["called by"]) == 4  # code first, then tests
    assert links["tests"] == ["test_a", "test_b", "test_c", "test_d"]


def test_a_module_summary_lists_its_surest_tests_first(tree, workspace):
    root = tree({
        "pkg/__init__.py": "",
        "pkg/a.py": "class A:\n    def append(self, x):\n        pass\n",
        "pkg/b.py": "class B:\n    def append(self, x):\n        pass\n",
        "tests/test_a.py": "from pkg.a import A\n\n\ndef test_z_append():\n    A().append(1)\n",
        "tests/test_any.py": "def test_a_any(thing):\n    thing.append(1)\n",  # append of A or of B: ambiguous
    })
    ws = workspace(root)
    ws.index()
    tested_by = next(line for line in module_summary(ws.reader(), "pkg/a.py").splitlines()
                     if line.startswith("# tested by: "))
    names = tested_by.removeprefix("# tested by: ").split(", ")
    assert names[0] == "test_a.test_z_append" and names[-1] == "test_any.test_a_any"


def test_the_overview_lists_the_projects_own_folders_before_its_test_folders(tmp_path, monkeypatch):
    import indexer.context.overview as overview

    monkeypatch.setattr(overview, "_FOLDERS", 2)
    files = {f"tests/suite_{i}/test_{j}.py": "def test_x():\n    pass\n" for i in range(3) for j in range(4)}
    files |= {"shop/__init__.py": "", "shop/cart.py": "def total():\n    return 0\n",
              "tests/fixture_app/__main__.py": "print(1)\n", "shop/__main__.py": "print(2)\n"}
    root = write_tree(tmp_path / "ws", files)
    with Workspace(root, index_dir=tmp_path / "idx") as ws:
        ws.index()
        text = ws.overview()
    architecture = text.split("## Architecture", 1)[1]
    assert "- shop/ (3 files)" in architecture and architecture.count("- tests/") == 1
    assert "python -m shop (shop/__main__.py)" in text and "fixture_app" not in text
