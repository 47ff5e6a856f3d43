"""MCP resources (overview, module summaries, task state) and prompt templates that pull context in."""

from __future__ import annotations

import json

import anyio.to_thread
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ResourceNotFoundError
from mcp.shared.exceptions import MCPError
from mcp_types import INVALID_PARAMS

from indexer import tokens
from indexer.events import UnknownTask
from indexer.graph.query import UnknownTarget
from server.mcp_output import cap_payload
from server.mcp_runtime import OVERVIEW_URI, Runtime
from server.mcp_tools import BAD_ARGUMENTS, one_line

#: The overview is read often and early: a small, fixed budget (llms.txt size).
OVERVIEW_BUDGET = 1_500


def _capped_text(text: str, cap: int) -> str:
    """``text`` cut to at most ``cap`` tokens, saying so."""
    return cap_payload({"text": text}, cap, lambda p: [p["text"]])["text"]


def _freshness_line(runtime: Runtime) -> str:
    """One trailing line that says how fresh the index behind a resource was."""
    fresh = runtime.freshness()
    state = "still indexing: partial" if fresh.get("indexing") else "up to date"
    return (f"\n\n<!-- codeahead index generation {fresh['generation']}, last change {fresh['last_change']}, "
            f"{state} -->")


def register_resources(server: MCPServer, runtime: Runtime, cap: int) -> None:
    """Add the overview, module and task resources to ``server``."""

    @server.resource(OVERVIEW_URI, name="overview", mime_type="text/markdown", description=(
        "Structural project overview in the spirit of llms.txt: purpose, folders, key modules, entry points."))
    async def overview() -> str:
        ws = await runtime.workspace()
        text = await anyio.to_thread.run_sync(ws.overview, OVERVIEW_BUDGET)
        return _capped_text(text, cap) + _freshness_line(runtime)

    @server.resource("codeahead://module/{+path}", name="module", mime_type="text/markdown", description=(
        "A module's classes and functions with signatures, its imports, importers and tests."))
    async def module(path: str, ctx: Context) -> str:
        ws = await runtime.workspace(ctx)
        try:
            text = await anyio.to_thread.run_sync(ws.module_summary, path)
        except (UnknownTarget, ValueError) as exc:
            raise ResourceNotFoundError(one_line(exc)) from None
        return _capped_text(text, cap) + _freshness_line(runtime)

    @server.resource("codeahead://task/{task_id}", name="task", mime_type="application/json", description=(
        "A task's state replayed from its recorded events."))
    async def task(task_id: str, ctx: Context) -> str:
        ws = await runtime.workspace(ctx)
        try:
            state = await anyio.to_thread.run_sync(ws.task_state, task_id)
        except (UnknownTask, ValueError) as exc:
            raise ResourceNotFoundError(one_line(exc)) from None
        payload = cap_payload({**state.to_json(), "freshness": runtime.freshness()}, cap)
        return json.dumps(payload, ensure_ascii=False, default=str)


_PROFILE_HELP = "model profile the context must fit, e.g. ollama-4k (default), qwen3-8b-32k, custom:N"


def register_prompts(server: MCPServer, runtime: Runtime, cap: int) -> None:
    """Add prompt templates whose context is packed for the chosen model profile."""

    async def packed(ctx: Context, query: str | None, focus: str | None, profile: str) -> str:
        ws = await runtime.workspace(ctx)
        try:
            budget = tokens.context_budget(tokens.profile(profile or tokens.DEFAULT_PROFILE))
            ctx_budget = min(budget, max(cap - 1_000, 1))
            result = await anyio.to_thread.run_sync(
                lambda: ws.context(query, focus=focus, budget=ctx_budget, profile=profile))
        except BAD_ARGUMENTS as exc:
            raise MCPError(INVALID_PARAMS, one_line(exc)) from None
        return result.text

    async def focus_if_known(ctx: Context, target: str) -> str | None:
        """``target`` as a focus when it names a node (pytest ids ``path::name`` become ``path``)."""
        ws = await runtime.workspace(ctx)
        candidate = target.split("::", 1)[0]
        try:
            await anyio.to_thread.run_sync(ws.nodes, candidate)
        except BAD_ARGUMENTS:
            return None
        return candidate

    @server.prompt(description="Fix a failing test: the test, the error and the code they touch.")
    async def fix_failing_test(test: str, error: str, ctx: Context, profile: str = tokens.DEFAULT_PROFILE) -> str:
        focus = await focus_if_known(ctx, test)
        context = await packed(ctx, f"{test}\n{error}", focus, profile)
        return (f"The test `{test}` fails with:\n\n```\n{error.strip()}\n```\n\n"
                f"Find the cause and propose the smallest fix. Relevant code:\n\n{context}")

    @server.prompt(description="Implement a feature, with the code it is most likely to touch.")
    async def implement(feature: str, ctx: Context, profile: str = tokens.DEFAULT_PROFILE) -> str:
        context = await packed(ctx, feature, None, profile)
        return (f"Implement this feature: {feature}\n\n"
                f"Follow the existing style; say which files you change. Relevant code:\n\n{context}")

    @server.prompt(description="Explain a module, class or function: what it does and who uses it.")
    async def explain(target: str, ctx: Context, profile: str = tokens.DEFAULT_PROFILE) -> str:
        focus = await focus_if_known(ctx, target)
        if focus is None:
            raise MCPError(INVALID_PARAMS, f"{target} names no indexed path or symbol: pass a path or dotted name")
        context = await packed(ctx, None, focus, profile)
        return (f"Explain `{target}`: what it does, how it is used (callers, tests), and anything surprising.\n\n"
                f"{context}")
