"""The MCP server through a real in-memory client: every tool, resource and prompt, and each error path."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import anyio
import pytest
from mcp.client import Client
from mcp.shared.exceptions import MCPError

from indexer import tokens
from indexer.workspace import Workspace
from server import mcp_runtime
from server.mcp_output import answer_tokens, cap_payload
from server.mcp_server import build_server
from tests.conftest import write_tree

pytestmark = pytest.mark.anyio

SHOP = {
    "README.md": "# shop\nA tiny shop used by the MCP tests.\n",
    "pkg/__init__.py": "",
    "pkg/cart.py": '"""Shopping cart totals."""\nfrom pkg.prices import price_of\n\n\n'
                   'def total(items: list[str]) -> float:\n    """Sum the price of every item."""\n'
                   "    return sum(price_of(i) for i in items)\n",
    "pkg/prices.py": '"""Price lookups."""\nPRICES = {"apple": 1.0, "pear": 2.0}\n\n\n'
                     'def price_of(item: str) -> float:\n    """The price of one item."""\n    return PRICES[item]\n',
    "tests/test_cart.py": "from pkg.cart import total\n\n\ndef test_total():\n"
                          '    assert total(["apple", "pear"]) == 3.0\n',
}
#: Enough functions that a top-100 search answer is far over a 400-token cap.
MANY = {f"pkg/gen{i}.py": "".join(f'def shipping_rule_{i}_{j}(parcel):\n    """Shipping rule {j} for a parcel."""\n'
                                  f"    return parcel\n\n\n" for j in range(10)) for i in range(15)}
TOOLS = {"get_context", "search_code", "related", "record_event", "task_state", "index_status", "predict_next"}
SMALL_CAP = 400


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def shop(tmp_path: Path) -> Path:
    return write_tree(tmp_path / "shop", {**SHOP, **MANY})


@pytest.fixture
def ws(shop: Path, tmp_path: Path):
    workspace = Workspace(shop, index_dir=tmp_path / "idx")
    yield workspace
    workspace.close()


def payload(result) -> dict:
    """The structured answer of a successful tool call."""
    assert not result.is_error, result.content[0].text
    return result.structured_content


def error_text(result) -> str:
    assert result.is_error
    text = result.content[0].text
    assert "\n" not in text
    return text


async def test_lists_the_tools_with_described_parameters(ws):
    async with Client(build_server(ws, watch=False)) as client:
        tools = {t.name: t for t in (await client.list_tools()).tools}
    assert set(tools) == TOOLS
    for tool in tools.values():
        assert tool.description and len(tool.description) < 300
        for name, schema in tool.input_schema.get("properties", {}).items():
            assert schema.get("description"), f"{tool.name}.{name} has no description"
    assert tools["record_event"].annotations.read_only_hint is False
    assert tools["search_code"].annotations.read_only_hint is True


async def test_every_tool_answers_with_freshness(ws):
    async with Client(build_server(ws, watch=False)) as client:
        status = payload(await client.call_tool("index_status", {}))
        hits = payload(await client.call_tool("search_code", {"query": "price of item", "top_k": 3}))
        ctx = payload(await client.call_tool("get_context", {"query": "cart total", "budget_tokens": 300}))
        rel = payload(await client.call_tool("related", {"target": "pkg.cart.total", "kinds": ["calls"]}))
        both = payload(await client.call_tool("related", {"target": "pkg.cart.total", "kinds": ["calls"],
                                                          "direction": "both"}))
        tests = payload(await client.call_tool("related", {"target": "pkg.cart.total", "kinds": ["tested_by"]}))
        event = payload(await client.call_tool("record_event", {"type": "task_started", "task_id": "T1",
                                                                 "data": {"title": "fix the cart"}}))
        state = payload(await client.call_tool("task_state", {"task_id": "T1"}))
        old = payload(await client.call_tool("task_state", {"task_id": "T1", "at_seq": event["seq"]}))
    for answer in (status, hits, ctx, rel, tests, event, state, old):
        assert answer["freshness"]["generation"] >= 1
        assert answer["freshness"]["indexing"] is False
        assert {"last_change", "pending_changes"} <= set(answer["freshness"])
    assert status["files"] == len(SHOP) - 1 + len(MANY)  # README is not indexed
    assert len(hits["hits"]) == 3 and hits["hits"][0]["name"] == "pkg.prices.price_of"
    assert ctx["tokens"] <= 300 and "def total" in ctx["text"]
    assert [(l["link"], l["name"]) for l in rel["links"]] == [("calls", "pkg.prices.price_of")]  # not its callers
    assert {l["link"] for l in both["links"]} == {"calls", "called_by"}
    assert [(l["link"], l["name"]) for l in tests["links"]] == [("tested_by", "test_cart.test_total")]
    assert event["type"] == "task_started" and state["title"] == "fix the cart" and old["seq"] == event["seq"]


async def test_get_context_text_block_is_the_packed_text(ws):
    async with Client(build_server(ws, watch=False)) as client:
        result = await client.call_tool("get_context", {"focus": "pkg/cart.py", "profile": "custom:1000"})
    answer = payload(result)
    assert result.content[0].text == answer["text"]
    assert answer["budget"] == 500  # half of a custom 1,000-token window
    # The blocks are what the model reads: the packed text and one line about it, never the item list.
    line = result.content[1].text
    assert line.startswith(f"[codeahead: {answer['tokens']} of 500 tokens; {len(answer['items'])} items (")
    assert f"{len(answer['dropped'])} left out" in line and tokens.count(line) < 60
    assert sum(tokens.count(block.text) for block in result.content) <= 500 + 60
    assert answer["items"] and {"path", "tier", "level", "why"} <= set(answer["items"][0])


async def test_a_name_of_several_nodes_is_answered_with_a_note_naming_the_others(tmp_path):
    root = write_tree(tmp_path / "two", {**SHOP, "pkg/legacy.py": "def price_of(item):\n    return 0.0\n"})
    with Workspace(root, index_dir=tmp_path / "idx2") as workspace:
        async with Client(build_server(workspace, watch=False)) as client:
            rel = payload(await client.call_tool("related", {"target": "price_of"}))
            ctx = payload(await client.call_tool("get_context", {"focus": "price_of", "budget_tokens": 300}))
            one = payload(await client.call_tool("related", {"target": "pkg.prices.price_of"}))
    other = ({"pkg.prices.price_of", "pkg.legacy.price_of"} - {rel["node"]["name"]}).pop()
    assert rel["note"].startswith("'price_of' names 2 nodes; used ") and other in rel["note"]
    assert "names 2 nodes" in ctx["note"]
    assert "note" not in one


@pytest.mark.parametrize(("tool", "args", "message"), [
    ("get_context", {}, "needs a query, a focus or a task_id"),
    ("get_context", {"focus": "nope/missing.py"}, "no node matches"),
    ("get_context", {"focus": "/etc/passwd"}, "outside the workspace"),
    ("get_context", {"query": "x", "budget_tokens": 0}, "budget must be"),
    ("get_context", {"query": "x", "profile": "gpt-9"}, "unknown model profile"),
    ("get_context", {"task_id": "NOPE"}, "no events for task"),
    ("search_code", {"query": "x", "top_k": 0}, "top_k must be between"),
    ("search_code", {"query": "x", "kind": "galaxy"}, "galaxy"),
    ("related", {"target": "pkg.cart.total", "direction": "up"}, "direction must be"),
    ("related", {"target": "pkg.cart.total", "kinds": ["friends"]}, "unknown link kind"),
    ("related", {"target": "pkg.cart.total", "depth": 9}, "depth must be between"),
    ("related", {"target": "pkg.cart.total", "limit": 0}, "limit must be between 1 and 500"),
    ("related", {"target": "no_such_symbol"}, "no node matches"),
    ("record_event", {"type": "dance", "task_id": "T1"}, "unknown event type"),
    ("record_event", {"type": "test_result", "task_id": "T1", "data": {"test": "t"}}, "passed"),
    ("task_state", {"task_id": "NOPE"}, "no events for task"),
    ("predict_next", {"task_id": "NOPE"}, "no events for task"),
    ("predict_next", {"current": "/etc/passwd"}, "outside the workspace"),
    ("predict_next", {"top_k": 0}, "top_k must be between"),
    ("predict_next", {"current": "pkg/nope.py"}, "is not an indexed file"),
    ("search_code", {"query": "x", "top_k": 1.5}, "top_k: Input should be a valid integer"),  # the input schema
    ("search_code", {}, "query: Field required"),
    ("get_context", {"query": "   "}, "query is blank"),
    ("get_context", {"query": "x", "budget_tokens": True}, "budget_tokens: Input should be a valid integer"),
    ("related", {"target": "pkg.cart.total", "kinds": "calls"}, "kinds: Input should be a valid list"),
    ("get_context", {"query": "cart", "budget": 100}, "unknown argument budget; it takes budget_tokens, focus"),
])
async def test_bad_arguments_are_one_line_tool_errors_and_the_server_keeps_running(ws, tool, args, message):
    async with Client(build_server(ws, watch=False)) as client:
        assert message in error_text(await client.call_tool(tool, args))
        assert payload(await client.call_tool("index_status", {}))["files"] > 0


async def test_no_answer_exceeds_the_cap_whatever_the_arguments(ws):
    async with Client(build_server(ws, watch=False, output_cap_tokens=SMALL_CAP)) as client:
        hits = await client.call_tool("search_code", {"query": "shipping rule parcel", "top_k": 100})
        ctx = await client.call_tool("get_context", {"query": "shipping rule", "budget_tokens": 100_000})
        rel = await client.call_tool("related", {"target": "pkg/gen1.py", "depth": 5})
    for result in (hits, ctx, rel):
        answer = payload(result)
        assert tokens.count(json.dumps(answer, separators=(",", ":"), ensure_ascii=False)) <= SMALL_CAP + 10
        assert sum(tokens.count(block.text) for block in result.content) <= SMALL_CAP + 10
    assert payload(hits)["truncated"]["cuts"][0]["field"] == "hits"
    assert 0 < len(payload(hits)["hits"]) < 100
    assert "over the output cap" in payload(ctx)["note"]


async def test_the_context_line_counts_what_was_packed_when_the_lists_were_cut(ws):
    from server.mcp_tools import CONTEXT_OVERHEAD

    async with Client(build_server(ws, watch=False, output_cap_tokens=CONTEXT_OVERHEAD + 2000)) as client:
        ctx = await client.call_tool("get_context", {"query": "shipping rule parcel", "budget_tokens": 2000})
    answer = payload(ctx)
    cut = {c["field"]: c["total"] for c in answer["truncated"]["cuts"] if "total" in c}
    assert cut and all(len(answer[field]) < total for field, total in cut.items())  # a list was cut ...
    counts = answer["counts"]
    assert counts["dropped"] == cut.get("dropped", len(answer["dropped"]))
    assert counts["items"] == cut.get("items", len(answer["items"]))
    assert f"; {counts['items']} items (" in ctx.content[-1].text  # ... and the last line counts them all
    assert f"; {counts['dropped']} left out" in ctx.content[-1].text
    assert "item lists were cut to the output cap, the text is whole" in ctx.content[-1].text
    assert answer["text"] == ctx.content[0].text and "truncated to fit" not in answer["text"]


def test_cap_payload_cuts_lists_then_strings_and_says_so():
    big = {"items": [{"n": i, "text": "word " * 20} for i in range(200)], "text": "line\n" * 5000}
    capped = cap_payload(big, 500)
    assert answer_tokens(capped) <= 500
    assert [cut["field"] for cut in capped["truncated"]["cuts"]] == ["items", "text"]
    assert capped["text"].endswith("truncated to fit the output cap ...]")
    assert cap_payload({"a": 1}, 500) == {"a": 1}


async def test_resources_overview_module_and_task(ws):
    async with Client(build_server(ws, watch=False)) as client:
        templates = {t.uri_template for t in (await client.list_resource_templates()).resource_templates}
        listed = {str(r.uri) for r in (await client.list_resources()).resources}
        overview = (await client.read_resource("codeahead://overview")).contents[0].text
        module = (await client.read_resource("codeahead://module/pkg/cart.py")).contents[0].text
        await client.call_tool("record_event", {"type": "task_started", "task_id": "T7", "data": {"title": "t"}})
        task = json.loads((await client.read_resource("codeahead://task/T7")).contents[0].text)
        errors = []
        for uri in ("codeahead://module/pkg/missing.py", "codeahead://task/NOPE",
                    "codeahead://module/../../etc/passwd", "codeahead://module/pkg.cart"):
            with pytest.raises(MCPError) as caught:
                await client.read_resource(uri)
            errors.append(str(caught.value))
    assert templates == {"codeahead://module/{+path}", "codeahead://task/{task_id}"}
    assert listed == {"codeahead://overview"}
    assert "pkg/cart.py" in overview and "index generation" in overview
    assert "def total(items: list[str]) -> float" in module and "tested by" in module
    assert task["title"] == "t" and task["freshness"]["generation"] >= 1
    assert "not an indexed module" in errors[0] and "no events for task" in errors[1]
    assert errors[3].endswith("pass its path, pkg/cart.py")  # a dotted name is no path


async def test_prompts_pack_context_for_the_profile(ws):
    async with Client(build_server(ws, watch=False)) as client:
        listed = (await client.list_prompts()).prompts
        names = {p.name for p in listed}
        undescribed = [(p.name, a.name) for p in listed for a in p.arguments or () if not a.description]
        fix = await client.get_prompt("fix_failing_test", {"test": "tests/test_cart.py::test_total",
                                                            "error": "KeyError: 'kiwi'"})
        impl = await client.get_prompt("implement", {"feature": "discount on pears", "profile": "custom:600"})
        explain = await client.get_prompt("explain", {"target": "pkg.cart.total"})
        with pytest.raises(MCPError, match="names no indexed path"):
            await client.get_prompt("explain", {"target": "nothing.here"})
        with pytest.raises(MCPError, match="unknown model profile"):
            await client.get_prompt("implement", {"feature": "x", "profile": "gpt-9"})
    assert names == {"fix_failing_test", "implement", "explain"} and undescribed == []  # a client shows them
    assert "KeyError: 'kiwi'" in fix.messages[0].content.text and "tests/test_cart.py" in fix.messages[0].content.text
    window = tokens.profile("ollama-4k").window
    assert tokens.count(fix.messages[0].content.text) < window * 0.75
    assert tokens.count(impl.messages[0].content.text) < 600
    assert "def total" in explain.messages[0].content.text


async def test_a_prompt_fits_its_profile_whatever_the_callers_text(ws):
    """The prompt is the model's input: a 200,000-character error or feature used to come back whole (51,234
    tokens for ollama-4k). The caller's text is clipped (an error keeps its end), the code gets the rest."""
    error = "Traceback (most recent call last):\n" + "  frame line\n" * 16_000 + "KeyError: 'kiwi'"
    async with Client(build_server(ws, watch=False)) as client:
        fix = await client.get_prompt("fix_failing_test", {"test": "tests/test_cart.py::test_total", "error": error})
        impl = await client.get_prompt("implement", {"feature": "discount " * 20_000, "profile": "custom:600"})
        with pytest.raises(MCPError, match="feature is empty"):
            await client.get_prompt("implement", {"feature": "  "})
    fixed, implemented = fix.messages[0].content.text, impl.messages[0].content.text
    assert tokens.count(fixed) <= tokens.context_budget(tokens.profile("ollama-4k"))
    assert "KeyError: 'kiwi'" in fixed and "characters cut ...]" in fixed and "def total" in fixed
    assert tokens.count(implemented) <= 300 and "characters cut ...]" in implemented


async def test_a_prompt_asked_wrongly_says_why_as_invalid_params(ws):
    async with Client(build_server(ws, watch=False)) as client:
        failures = []
        for name, args in (("explain", {}), ("no_such_prompt", {})):
            with pytest.raises(MCPError) as caught:
                await client.get_prompt(name, args)
            failures.append((caught.value.error.code, str(caught.value)))
    assert failures == [(-32602, "Missing required arguments: {'target'}"), (-32602, "Unknown prompt: no_such_prompt")]


@pytest.mark.parametrize("task_id, uri", [("T2", "codeahead://task/T2"),
                                          ("fix/12 b", "codeahead://task/fix%2F12%20b")])  # no URI segment
async def test_record_event_notifies_task_listeners_under_a_readable_uri(ws, task_id, uri):
    async with Client(build_server(ws, watch=False)) as client:
        async with client.listen(resource_subscriptions=[uri]) as sub:
            await client.call_tool("record_event", {"type": "note", "task_id": task_id, "data": {"text": "hi"}})
            with anyio.fail_after(5):
                event = await sub.__anext__()
        state = json.loads((await client.read_resource(event.uri)).contents[0].text)
    assert event.uri == uri and state["task_id"] == task_id


async def test_watcher_change_notifies_overview_and_module_listeners(ws, shop):
    wanted = {"codeahead://overview", "codeahead://module/pkg/cart.py"}
    async with Client(build_server(ws, watch=True)) as client:
        await client.call_tool("index_status", {})  # waits for the first pass; the watcher starts after it
        with anyio.fail_after(5):
            while ws.watcher is None:
                await anyio.sleep(0.05)
        async with client.listen(resource_subscriptions=sorted(wanted)) as sub:
            (shop / "pkg/cart.py").write_text(SHOP["pkg/cart.py"] + "\n\ndef discount():\n    return 0\n")
            seen = set()
            with anyio.fail_after(10):
                while seen != wanted:
                    seen.add((await sub.__anext__()).uri)
        module = (await client.read_resource("codeahead://module/pkg/cart.py")).contents[0].text
    assert "def discount()" in module


async def test_requests_during_the_first_index_report_progress_and_say_so(ws, monkeypatch):
    monkeypatch.setattr(mcp_runtime, "WARMUP_WAIT_SECONDS", 0.5)
    started, release = threading.Event(), threading.Event()

    def hold(phase, done, total):  # another indexer holds the write lock until released
        started.set()
        release.wait(10)

    blocker = threading.Thread(target=ws.index, kwargs={"progress": hold})
    blocker.start()
    started.wait(5)
    progress = []

    async def on_progress(done, total, message):
        progress.append(message)

    try:
        async with Client(build_server(ws, watch=False)) as client:
            early_result = await client.call_tool("get_context", {"query": "cart"}, progress_callback=on_progress)
            early = payload(early_result)
            missing = await client.call_tool("related", {"target": "no.such.symbol"})
            release.set()
            with anyio.fail_after(10):
                while payload(await client.call_tool("index_status", {}))["freshness"]["indexing"]:
                    await anyio.sleep(0.05)
    finally:
        release.set()
        blocker.join()
    assert early["freshness"]["indexing"] is True
    assert "code may be missing: retry in a few seconds" in early["freshness"]["initial_index"]["note"]
    assert "the first index pass is still running" in early_result.content[-1].text  # the line the model reads
    assert missing.is_error and "the first index pass is still running" in missing.content[0].text
    assert progress and progress[0].startswith("indexing")


def test_progress_steps_only_grow_across_index_phases(ws):
    runtime = mcp_runtime.Runtime(ws, watch=False)
    steps = []
    for phase, done, total in [("walk", 40, 40), ("parse", 1, 40), ("parse", 40, 40), ("resolve", 3, 5)]:
        runtime._on_progress(phase, done, total)
        steps.append(runtime._steps)
    assert steps == [40, 41, 80, 83]
    runtime._stopping.set()  # what detach() does: the pass in flight stops at its next progress call
    with pytest.raises(mcp_runtime.IndexCancelled):
        runtime._on_progress("resolve", 4, 5)


async def test_workspace_comes_from_the_client_roots(shop, tmp_path):
    from mcp_types import ListRootsResult, Root

    async def roots(_ctx):
        return ListRootsResult(roots=[Root(uri=shop.as_uri(), name="shop")])

    server = build_server(index_dir=tmp_path / "roots-idx", watch=False)
    async with Client(server, mode="legacy", list_roots_callback=roots) as client:
        status = payload(await client.call_tool("index_status", {}))
    assert status["workspace"] == str(shop)


def test_build_server_refuses_a_zero_cap(ws):
    with pytest.raises(ValueError, match="output_cap_tokens"):
        build_server(ws, output_cap_tokens=0)


async def test_predict_next_learns_moves_and_says_why(ws):
    async with Client(build_server(ws, watch=False)) as client:
        for path in ("pkg/cart.py", "pkg/prices.py", "pkg/cart.py"):
            payload(await client.call_tool("record_event", {"type": "file_opened", "task_id": "T9",
                                                            "data": {"path": path}}))
        answer = payload(await client.call_tool("predict_next", {"task_id": "T9", "top_k": 3}))
        first = answer["predictions"][0]
        assert first["path"] == "pkg/prices.py"
        assert any("imported by the current file" in r for r in first["reasons"])
        assert "freshness" in answer


def test_warm_up_builds_the_most_imported_module_summaries(ws):
    from server.mcp_runtime import warm_up

    ws.index()
    ws.predictor.mine_git(ws.root)  # the server loads the model before its warm-up, as here
    assert warm_up(ws, limit=2) == 2
    assert ws.predictor.trails == {} and ws.predictor.stats()["files_known"] == 0  # no move learned
    module_tier = ws.cache.stats()["tiers"]["module"]
    assert module_tier["entries"] >= 2
    before = module_tier["hits"]
    ws.module_summary("pkg/prices.py")  # imported by cart.py: among the most imported
    assert ws.cache.stats()["tiers"]["module"]["hits"] == before + 1


async def test_related_lists_at_most_its_limit_and_says_how_to_see_more(ws):
    async with Client(build_server(ws, watch=False)) as client:
        few = payload(await client.call_tool("related", {"target": "pkg/gen1.py", "depth": 5, "limit": 3}))
        default = payload(await client.call_tool("related", {"target": "pkg/gen1.py", "depth": 5}))
    assert len(few["links"]) == 3 and "raise limit" in few["note"]
    assert 3 < len(default["links"]) <= 50


async def test_a_prompt_whose_search_finds_nothing_says_so_where_the_code_would_go(ws):
    async with Client(build_server(ws, watch=False)) as client:
        impl = await client.get_prompt("implement", {"feature": "zzqx vvkw"})
        empty = await client.call_tool("get_context", {"query": "zzqx vvkw"})
    assert impl.messages[0].content.text.endswith("Relevant code:\n\n(no indexed code matched: search the "
                                                  "workspace yourself)")
    assert "; 0 items; " in empty.content[-1].text  # not "0 items ()"
