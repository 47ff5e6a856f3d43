"""The MCP tools: thin calls on ``Workspace``, each answer capped and stamped with freshness."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Annotated, Any, TypeVar

import anyio.to_thread
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp_types import CallToolResult, ToolAnnotations
from pydantic import Field

from indexer import tokens
from indexer.events import UnknownTask
from indexer.graph.query import MAX_LINKS, UnknownTarget, ambiguity, link_direction, via_names
from indexer.types import Node, vector_only_note
from indexer.workspace import WorkspaceError
from server.mcp_output import Render, json_blocks, tool_result
from server.mcp_runtime import Runtime, first_pass_text, task_uri

MAX_TOP_K = 100
MAX_DEPTH = 5
#: Links ``related`` lists unless asked for more: Django's QuerySet has ~10,000 tokens of them at depth 1,
#: more than a small model's whole window.
DEFAULT_LINKS = 50
#: Tokens of a get_context answer kept for its item list and freshness, outside the packed text.
CONTEXT_OVERHEAD = 3_000

#: Engine errors that mean "bad arguments": reported to the agent as one-line tool errors.
BAD_ARGUMENTS = (ValueError, UnknownTarget, UnknownTask, WorkspaceError)

Answer = Annotated[CallToolResult, dict[str, Any]]
T = TypeVar("T")

_READ_ONLY = ToolAnnotations(read_only_hint=True, open_world_hint=False)
_APPEND_ONLY = ToolAnnotations(read_only_hint=False, destructive_hint=False, idempotent_hint=False,
                               open_world_hint=False)


def one_line(exc: BaseException) -> str:
    """An engine error as one line, without the quotes KeyError puts around its message."""
    text = str(exc).strip()
    if isinstance(exc, KeyError) and len(exc.args) == 1 and isinstance(exc.args[0], str):
        text = exc.args[0].strip()
    return " ".join(text.split()) or type(exc).__name__


async def call_engine(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run an engine call in a worker thread; bad arguments become a ToolError."""
    try:
        return await anyio.to_thread.run_sync(lambda: fn(*args, **kwargs))
    except BAD_ARGUMENTS as exc:
        raise ToolError(one_line(exc)) from None


def node_json(node: Node) -> dict[str, Any]:
    """A node as tools show it: where it is and what it is."""
    return {"name": node.qualname, "kind": node.kind.value, "path": node.path, "start_line": node.start_line,
            "end_line": node.end_line, "signature": node.signature, "doc": node.doc}


def _context_blocks(payload: dict[str, Any]) -> list[str]:
    """get_context reads best as the packed text itself, then one line about it.

    The blocks are what a client puts in the model's window, and the budget is the agent's: the item list
    (path, lines, tier, level, tokens, score and why of each) as JSON took 2-4x the packed text's tokens.
    It stays in the structured content, for clients and programs that read it.
    """
    counts = payload.get("counts") or context_counts(payload)  # the lists may be cut to the output cap
    levels = ", ".join(f"{n} {level}" for level, n in counts["levels"].items())
    line = (f"[codeahead: {payload.get('tokens', 0)} of {payload.get('budget', 0)} tokens; {counts['items']} items"
            + (f" ({levels})" if levels else "") + f"; {counts['dropped']} left out")
    freshness = payload.get("freshness") or {}
    if freshness:
        line += f"; index generation {freshness.get('generation')}, {freshness.get('pending_changes', 0)} changes pending"
    if payload.get("note"):
        line += f"; {payload['note']}"
    first_pass = freshness.get("initial_index")
    if first_pass:
        line += "; " + first_pass_text(first_pass["phase"], first_pass["done"], first_pass["total"])
    cuts = {cut.get("field") for cut in (payload.get("truncated") or {}).get("cuts", ())}
    if "text" in cuts:
        line += "; the packed text was cut to the output cap"
    elif cuts:  # the text above is whole: only the structured lists beside it were shortened
        line += "; the structured item lists were cut to the output cap, the text is whole"
    return [payload.get("text", ""), line + "]"]


def context_counts(payload: dict[str, Any]) -> dict[str, Any]:
    """How many items were packed (by level, most first) and left out: said in the answer's last line, which
    must not count the item lists after the output cap cut them."""
    levels = Counter(i["level"] for i in payload.get("items", []))
    return {"items": sum(levels.values()), "levels": dict(levels.most_common()),
            "dropped": len(payload.get("dropped", []))}


def _fit_budget(budget_tokens: int | None, profile: str | None, cap: int) -> tuple[int | None, str | None]:
    """The budget to pack with, lowered to fit the output cap; and a note when it was lowered."""
    ceiling = max(cap - CONTEXT_OVERHEAD, 1)
    try:
        asked = tokens.context_budget(tokens.profile(profile or tokens.DEFAULT_PROFILE), budget_tokens)
    except ValueError as exc:
        raise ToolError(one_line(exc)) from None
    if asked <= ceiling:
        return budget_tokens, None
    return ceiling, f"budget {asked} is over the output cap; packed within {ceiling} tokens"


def register_tools(server: MCPServer, runtime: Runtime, cap: int) -> None:
    """Add the codeahead tools to ``server``; every answer is at most ``cap`` tokens."""

    def answer(payload: dict[str, Any], render: Render = json_blocks) -> CallToolResult:
        payload["freshness"] = runtime.freshness()
        return tool_result(payload, cap, render)

    async def call(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """``call_engine``, whose errors add that the first index pass is still running while it is: a bare
        "no node matches" for code the pass has not committed yet would be believed."""
        try:
            return await call_engine(fn, *args, **kwargs)
        except ToolError as exc:
            note = runtime.first_pass_note()
            if note is None:
                raise
            raise ToolError(f"{exc} ({note})") from None

    @server.tool(annotations=_READ_ONLY, description=(
        "Packed code context for a query, a focus (path, path:line or dotted symbol) and/or a task, "
        "within a token budget: the most relevant code first, with its callers, callees and tests. Blocks cite "
        "`path:start-end`; `### path [signatures]` lists more as `start-end signature` lines."))
    async def get_context(
        ctx: Context,
        query: Annotated[str | None, Field(description="what you are working on, in words or identifiers")] = None,
        focus: Annotated[str | None, Field(description="path, path:line or dotted symbol to center on")] = None,
        task_id: Annotated[str | None, Field(description="task whose recorded events steer the context")] = None,
        budget_tokens: Annotated[int | None, Field(strict=True, description="token budget (default: the profile's)")] = None,
        profile: Annotated[str | None, Field(
            description="model profile: ollama-4k (default), mistral-7b-8k, qwen3-8b-32k, custom:N...")] = None,
    ) -> Answer:
        if query is not None and not query.strip():
            raise ToolError("query is blank: pass words or identifiers, or leave it out")
        if not (query or focus or task_id):
            raise ToolError("get_context needs a query, a focus or a task_id: pass at least one")
        budget, note = _fit_budget(budget_tokens, profile, cap)
        ws = await runtime.workspace(ctx, ctx.report_progress)
        packed = await call(ws.context, query, focus=focus, task_id=task_id, budget=budget, profile=profile)
        payload = packed.to_json()
        payload["counts"] = context_counts(payload)
        notes = [note, ambiguity(focus, await call(ws.nodes, focus)) if focus else None]
        if any(notes):
            payload["note"] = " ".join(n for n in notes if n)
        return answer(payload, _context_blocks)

    @server.tool(annotations=_READ_ONLY, description=(
        "Ranked code locations for a query, each with a one-line summary. Cheap; use to find where to look."))
    async def search_code(
        ctx: Context,
        query: Annotated[str, Field(description="words, identifiers or a question")],
        top_k: Annotated[int, Field(strict=True, description=f"how many hits, 1-{MAX_TOP_K}")] = 10,
        kind: Annotated[str | None, Field(description="only nodes of this kind: module, class, function, "
                                                      "method or test")] = None,
    ) -> Answer:
        if not 1 <= top_k <= MAX_TOP_K:
            raise ToolError(f"top_k must be between 1 and {MAX_TOP_K}, not {top_k}")
        ws = await runtime.workspace(ctx, ctx.report_progress)
        hits = await call(ws.search, query, top_k=top_k, kind=kind)
        note = vector_only_note(hits)
        return answer({"hits": [h.to_json() for h in hits], **({"note": note} if note else {})})

    @server.tool(annotations=_READ_ONLY, description=(
        "Two-way links of a node: calls/called_by, imports/imported_by, tests/tested_by, "
        "inherits/inherited_by, contains/belongs_to, depends_on/used_by (libraries, and the pytest fixtures "
        "a test asks for)."))
    async def related(
        ctx: Context,
        target: Annotated[str, Field(description="path, path:line or dotted symbol")],
        kinds: Annotated[list[str] | None, Field(description=(
            "link names to keep, each meaning its own direction: calls (what it calls), called_by, imports, "
            "imported_by, tests, tested_by, inherits, inherited_by, contains, belongs_to, depends_on, used_by "
            "(default: all)"))] = None,
        direction: Annotated[str | None, Field(description=(
            "both: a forward name in kinds (calls) brings its inverse (called_by) too; out or in: only links "
            "from or to the target (default: as the names say)"))] = None,
        depth: Annotated[int, Field(strict=True, description=f"hops to follow, 1-{MAX_DEPTH}")] = 1,
        limit: Annotated[int, Field(strict=True, description=(
            f"most links to list, nearest first, 1-{MAX_LINKS}"))] = DEFAULT_LINKS,
    ) -> Answer:
        if not 1 <= depth <= MAX_DEPTH:
            raise ToolError(f"depth must be between 1 and {MAX_DEPTH}, not {depth}")
        if not 1 <= limit <= MAX_LINKS:
            raise ToolError(f"limit must be between 1 and {MAX_LINKS}, not {limit}")
        ws = await runtime.workspace(ctx, ctx.report_progress)
        matches = await call(ws.nodes, target)
        node = matches[0]
        links = await call(ws.related, node, kinds=kinds, depth=depth, direction=link_direction(kinds, direction),
                           limit=limit + 1)
        note = ambiguity(target, matches)
        if len(links) > limit:
            links = links[:limit]
            note = " ".join(x for x in (note, f"The first {limit} links, nearest first: narrow with "
                                               "kinds or depth, or raise limit.") if x)
        via = via_names(links)
        return answer({
            "node": node_json(node),
            **({"note": note} if note else {}),
            "links": [{"link": link.name, "depth": link.depth, **({"via": via[i]} if i in via else {}),
                       "confidence": round(link.confidence, 3), **node_json(link.node)}
                      for i, link in enumerate(links)],
        })

    @server.tool(annotations=_APPEND_ONLY, description=(
        "Append an event to a task's log: task_started{title}, file_opened{path}, file_edited{path}, "
        "test_result{test,passed,output?}, error{message?,traceback?}, iteration{summary}, note{text}, "
        "task_status{status}, module_started/module_complete{path}."))
    async def record_event(
        ctx: Context,
        type: Annotated[str, Field(description="event type, e.g. task_started, test_result, error")],
        task_id: Annotated[str, Field(description="your task's id (any short string)")],
        data: Annotated[dict[str, Any] | None, Field(description="the event's fields")] = None,
    ) -> Answer:
        ws = await runtime.workspace(ctx)
        note = await call(ws.unstarted_task_note, task_id, type)
        event = await call(ws.record, task_id, type, data)
        await runtime.publish(task_uri(task_id))
        return answer({"seq": event.seq, "task_id": event.task_id, "type": event.type, "data": event.data,
                       **({"note": note} if note else {})})

    @server.tool(annotations=_READ_ONLY, description=(
        "A task's state replayed from its events: status, files opened/edited, last error, failing tests, "
        "iterations."))
    async def task_state(
        ctx: Context,
        task_id: Annotated[str, Field(description="the task's id")],
        at_seq: Annotated[int | None, Field(strict=True, description="replay only events up to this sequence number")] = None,
    ) -> Answer:
        ws = await runtime.workspace(ctx)
        state = await call(ws.task_state, task_id, at=at_seq)
        return answer(state.to_json())

    @server.tool(annotations=_READ_ONLY, description=(
        "The files you will likely need next, each with a score and its reasons (your recent moves, imports, "
        "tests, habits of this workspace). Their context is prefetched."))
    async def predict_next(
        ctx: Context,
        current: Annotated[str | None, Field(description="the file you are on (default: the task's last file)")] = None,
        task_id: Annotated[str | None, Field(description="your task's id, to use its recorded moves")] = None,
        top_k: Annotated[int, Field(strict=True, description=f"how many files, 1-{MAX_TOP_K}")] = 5,
    ) -> Answer:
        if not 1 <= top_k <= MAX_TOP_K:
            raise ToolError(f"top_k must be between 1 and {MAX_TOP_K}, not {top_k}")
        ws = await runtime.workspace(ctx)
        predictions = await call(ws.predict, current, task_id=task_id, top_k=top_k)
        return answer({"predictions": [{"path": p.path, "score": p.score, "reasons": p.reasons}
                                       for p in predictions]})

    @server.tool(annotations=_READ_ONLY, description=(
        "Index freshness (generation, last change, pending changes, initial indexing), counts and skipped files."))
    async def index_status(ctx: Context) -> Answer:
        ws = await runtime.workspace(ctx, ctx.report_progress)
        return answer(await call(ws.status))
