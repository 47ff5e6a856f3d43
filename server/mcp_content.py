"""MCP resources (overview, module summaries, task state) and prompt templates that pull context in."""

from __future__ import annotations

import json
from typing import Annotated

import anyio.to_thread
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ResourceNotFoundError
from mcp.shared.exceptions import MCPError
from mcp_types import INVALID_PARAMS
from pydantic import Field

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
    state = runtime.first_pass_note() or ("still indexing: partial" if fresh.get("indexing") else "up to date")
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
            note = runtime.first_pass_note()
            raise ResourceNotFoundError(one_line(exc) + (f" ({note})" if note else "")) from None
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


#: What the prompts' shared arguments mean, as a client shows them.
_PROFILE = "the model profile whose window the prompt fits: ollama-4k (default), qwen3-8b-32k, custom:N..."
_TEST = "the failing test: a pytest id (tests/test_x.py::test_y) or a name"
#: What a prompt says where its code would go when the search found none (an empty "Relevant code:" read as cut).
NO_CODE = "(no indexed code matched: search the workspace yourself)"
#: Share of a prompt's budget the caller's own text (an error, a feature, a name) may take.
USER_TEXT_SHARE = 0.4
#: Tokens kept free where the frame and the packed code meet (BPE counts of joined texts are not sums).
_JOIN_SLACK = 4
_CLIP_MARK = "[... {} characters cut ...]"


def _clip(text: str, limit: int, counter: tokens.Tokenizer, *, keep_end: bool) -> str:
    """``text`` within ``limit`` tokens: its longest start (or end) that fits, marked where it was cut."""
    if counter.count(text) <= limit:
        return text
    lo, hi = 0, len(text)  # invariant: keeping lo characters fits
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if counter.count(_cut(text, mid, keep_end)) <= limit:
            lo = mid
        else:
            hi = mid - 1
    return _cut(text, lo, keep_end)


def _cut(text: str, keep: int, keep_end: bool) -> str:
    mark = _CLIP_MARK.format(len(text) - keep)
    return f"{mark}\n{text[len(text) - keep:]}" if keep_end else f"{text[:keep]}\n{mark}"


def register_prompts(server: MCPServer, runtime: Runtime, cap: int) -> None:
    """Add prompt templates whose context is packed for the chosen model profile.

    The whole prompt (instructions, the caller's text and the packed code) fits the profile's context budget:
    an error or a feature text over USER_TEXT_SHARE of it is clipped (an error keeps its end, where the
    innermost frames and the exception are), and the code gets what is left.
    """

    def fit(profile: str) -> tuple[int, tokens.Tokenizer]:
        """The whole prompt's budget for ``profile`` (within the output cap), and how it counts."""
        try:
            prof = tokens.profile(profile or tokens.DEFAULT_PROFILE)
        except ValueError as exc:
            raise MCPError(INVALID_PARAMS, one_line(exc)) from None
        return min(tokens.context_budget(prof), max(cap - 1_000, 1)), tokens.tokenizer_for(prof)

    async def prompt(ctx: Context, frame: str, query: str | None, focus: str | None, profile: str) -> str:
        """``frame`` (which ends where the code goes) followed by the context packed in the rest of the budget."""
        ws = await runtime.workspace(ctx)
        budget, counter = fit(profile)
        room = budget - counter.count(frame) - _JOIN_SLACK
        if room < 1:
            return frame.rstrip()
        try:
            result = await anyio.to_thread.run_sync(
                lambda: ws.context(query, focus=focus, budget=room, profile=profile))
        except BAD_ARGUMENTS as exc:
            raise MCPError(INVALID_PARAMS, one_line(exc)) from None
        return frame + (result.text or NO_CODE)

    def clipped(text: str, what: str, profile: str, *, keep_end: bool = False) -> str:
        """The caller's ``text``, at most USER_TEXT_SHARE of the budget (its start, or with ``keep_end`` its end)."""
        text = text.strip()
        if not text:
            raise MCPError(INVALID_PARAMS, f"{what} is empty: pass the text the prompt is about")
        budget, counter = fit(profile)
        return _clip(text, int(USER_TEXT_SHARE * budget), counter, keep_end=keep_end)

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
    async def fix_failing_test(test: Annotated[str, Field(description=_TEST)], error: Annotated[str, Field(
            description="the error or traceback it fails with")], ctx: Context,
            profile: Annotated[str, Field(description=_PROFILE)] = tokens.DEFAULT_PROFILE) -> str:
        test = clipped(test, "test", profile)
        error = clipped(error, "error", profile, keep_end=True)
        focus = await focus_if_known(ctx, test)
        frame = (f"The test `{test}` fails with:\n\n```\n{error}\n```\n\n"
                 "Find the cause and propose the smallest fix. Relevant code:\n\n")
        return await prompt(ctx, frame, f"{test}\n{error}", focus, profile)

    @server.prompt(description="Implement a feature, with the code it is most likely to touch.")
    async def implement(feature: Annotated[str, Field(description="the feature, in words")], ctx: Context,
                        profile: Annotated[str, Field(description=_PROFILE)] = tokens.DEFAULT_PROFILE) -> str:
        feature = clipped(feature, "feature", profile)
        frame = (f"Implement this feature: {feature}\n\n"
                 "Follow the existing style; say which files you change. Relevant code:\n\n")
        return await prompt(ctx, frame, feature, None, profile)

    @server.prompt(description="Explain a module, class or function: what it does and who uses it.")
    async def explain(target: Annotated[str, Field(description="path, path:line or dotted name to explain")],
                      ctx: Context,
                      profile: Annotated[str, Field(description=_PROFILE)] = tokens.DEFAULT_PROFILE) -> str:
        target = clipped(target, "target", profile)
        focus = await focus_if_known(ctx, target)
        if focus is None:
            raise MCPError(INVALID_PARAMS, f"{target!r} names no indexed path or symbol: pass a path or dotted name")
        frame = f"Explain `{target}`: what it does, how it is used (callers, tests), and anything surprising.\n\n"
        return await prompt(ctx, frame, None, focus, profile)
