"""Tool answers that never exceed the output cap, whatever the arguments.

An answer is a JSON object (the structured content) plus the text blocks the
agent reads. Both are measured with ``indexer.tokens.count``; when they are over
the cap, the longest lists are cut first, then the longest strings, and the
answer says what was cut in ``truncated``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from mcp_types import CallToolResult, TextContent

from indexer import tokens

#: Claude Code caps MCP tool output at 25,000 tokens; so do we by default.
DEFAULT_CAP = 25_000
#: Tokens kept free for the ``truncated`` note itself and JSON punctuation.
_NOTE_RESERVE = 200
_CUT_MARK = "\n[... truncated to fit the output cap ...]"

Render = Callable[[dict[str, Any]], list[str]]


def to_json(payload: dict[str, Any]) -> str:
    """Compact JSON, the text form of a structured answer."""
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":"), default=str)


def json_blocks(payload: dict[str, Any]) -> list[str]:
    """The default text rendering: the answer as one compact JSON block."""
    return [to_json(payload)]


def answer_tokens(payload: dict[str, Any], render: Render = json_blocks) -> int:
    """Tokens of the larger of the two forms an agent may read: the JSON or the text blocks."""
    return max(tokens.count(to_json(payload)), sum(tokens.count(b) for b in render(payload)))


def _fits(payload: dict[str, Any], cap: int, render: Render) -> bool:
    return answer_tokens(payload, render) <= cap


def _cut_list(payload: dict[str, Any], key: str, room: int, render: Render) -> int:
    """Keep the longest prefix of list ``key`` that fits ``room``; returns how many were kept."""
    full = payload[key]
    lo, hi = 0, len(full)  # invariant: lo items fit
    while lo < hi:
        mid = (lo + hi + 1) // 2
        payload[key] = full[:mid]
        if _fits(payload, room, render):
            lo = mid
        else:
            hi = mid - 1
    payload[key] = full[:lo]
    return lo


def _cut_text(payload: dict[str, Any], key: str, room: int, render: Render) -> int:
    """Keep the longest head of string ``key`` that fits ``room``; returns the characters kept."""
    full = payload[key]
    lo, hi = 0, len(full)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        payload[key] = full[:mid] + _CUT_MARK
        if _fits(payload, room, render):
            lo = mid
        else:
            hi = mid - 1
    payload[key] = full[:lo] + _CUT_MARK
    return lo


def _by_size(payload: dict[str, Any], kind: type) -> list[str]:
    """Top-level keys holding values of ``kind``, largest serialized first."""
    keys = [k for k, v in payload.items() if isinstance(v, kind) and v and k != "freshness"]
    return sorted(keys, key=lambda k: len(to_json({k: payload[k]})), reverse=True)


def cap_payload(payload: dict[str, Any], cap: int, render: Render = json_blocks) -> dict[str, Any]:
    """``payload`` cut to at most ``cap`` tokens (lists first, then strings), noting every cut."""
    if _fits(payload, cap, render):
        return payload
    payload = dict(payload)
    room = max(cap - _NOTE_RESERVE, 1)
    notes: list[dict[str, Any]] = []
    for key in _by_size(payload, list):
        total = len(payload[key])
        kept = _cut_list(payload, key, room, render)
        notes.append({"field": key, "kept": kept, "total": total})
        if _fits(payload, room, render):
            break
    if not _fits(payload, room, render):
        for key in _by_size(payload, str):
            total = len(payload[key])
            kept = _cut_text(payload, key, room, render)
            notes.append({"field": key, "kept_chars": kept, "total_chars": total})
            if _fits(payload, room, render):
                break
    payload["truncated"] = {"cap_tokens": cap, "cuts": notes,
                            "hint": "narrow the request (smaller top_k / depth / budget) to see everything"}
    return payload


def tool_result(payload: dict[str, Any], cap: int, render: Render = json_blocks) -> CallToolResult:
    """A structured tool answer within ``cap`` tokens, its text blocks rendered by ``render``."""
    capped = cap_payload(payload, cap, render)
    blocks = [TextContent(type="text", text=text) for text in render(capped)]
    return CallToolResult(content=blocks, structured_content=capped)
