"""A short agent loop: a local Ollama model, fed by codeahead over stdio, within a 4,096-token window.

    ollama pull qwen2.5-coder:3b
    python examples/ollama_agent.py "why does the cart total fail for kiwis?" --workspace .

Each step pulls context with ``get_context`` (profile ``ollama-4k``), builds a prompt
that fits the window (system 20% / context 50% / generation 30%), asks the model
through Ollama's ``/api/chat`` (stdlib ``urllib`` only), and records the step in the
task's event log. The model may answer ``SEARCH: <words>`` to ask for other context,
or ``DONE`` when it has answered. Everything but the two network calls is a pure
function (tested in ``tests/test_examples.py``).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import sys
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

OLLAMA_URL = "http://127.0.0.1:11434"
DEFAULT_MODEL = "qwen2.5-coder:3b"
PROFILE = "ollama-4k"
WINDOW = 4_096
SYSTEM_SHARE, CONTEXT_SHARE, GENERATION_SHARE = 0.20, 0.50, 0.30
MAX_STEPS = 3
HTTP_TIMEOUT_SECONDS = 300
#: Characters per token when codeahead's tokenizer is not importable: low, so estimates run high.
CHARS_PER_TOKEN_FLOOR = 3
#: Tokens each chat message costs on top of its text (role markers, separators).
MESSAGE_OVERHEAD = 8
CUT = "\n[... cut to fit the window ...]"
SEARCH_PREFIX = "SEARCH:"
DONE_MARK = "DONE"

SYSTEM_PROMPT = (
    "You are a careful coding assistant. Answer from the code context given; cite files as path:line. "
    f"If you need other code, reply with one line '{SEARCH_PREFIX} <words to search>'. "
    f"When your answer is complete, end it with a line '{DONE_MARK}'."
)

Count = Callable[[str], int]


class OllamaError(RuntimeError):
    """Ollama answered with an error or something that is not a chat reply."""


@dataclass(frozen=True)
class Budget:
    """How the window is split: tokens for the system prompt, the context and the reply."""

    system: int
    context: int
    generation: int

    @property
    def prompt(self) -> int:
        """Tokens the whole prompt (system + user message) may use."""
        return self.system + self.context


def split_budget(window: int = WINDOW) -> Budget:
    """The 20/50/30 split of ``window``; rounding leftovers go to generation."""
    if window < 10:
        raise ValueError(f"window of {window} tokens is too small; use at least 10")
    system = math.floor(window * SYSTEM_SHARE)
    context = math.floor(window * CONTEXT_SHARE)
    return Budget(system, context, window - system - context)


def default_count() -> Count:
    """codeahead's cl100k counter if importable, else a conservative character estimate."""
    try:
        from indexer.tokens import count
    except ImportError:
        return lambda text: math.ceil(len(text) / CHARS_PER_TOKEN_FLOOR)
    return count


def fit(text: str, limit: int, count: Count) -> str:
    """The longest head of ``text`` (plus a cut mark) that costs at most ``limit`` tokens."""
    if count(text) <= limit:
        return text
    lo, hi = 0, len(text)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if count(text[:mid] + CUT) <= limit:
            lo = mid
        else:
            hi = mid - 1
    return text[:lo] + CUT if count(text[:lo] + CUT) <= limit else ""


def build_messages(task: str, context: str, notes: list[str], budget: Budget, count: Count) -> list[dict]:
    """System and user messages that together fit ``budget.prompt`` tokens, context trimmed first."""
    system = fit(SYSTEM_PROMPT, budget.system - MESSAGE_OVERHEAD, count)
    head = f"Task: {task}\n"
    if notes:
        head += "Earlier steps:\n" + "\n".join(f"- {n}" for n in notes) + "\n"
    head = fit(head, budget.context // 2, count)
    label = "\nCode context:\n"
    room = budget.prompt - count(system) - count(head) - count(label) - 2 * MESSAGE_OVERHEAD
    while True:  # token counts of joined texts can differ from their sum by a few: shrink until it fits
        messages = [{"role": "system", "content": system},
                    {"role": "user", "content": head + label + fit(context, max(room, 0), count)}]
        excess = prompt_tokens(messages, count) - budget.prompt
        if excess <= 0 or room <= 0:
            return messages
        room -= excess


def prompt_tokens(messages: list[dict], count: Count) -> int:
    """What the messages cost, with the per-message overhead."""
    return sum(count(m["content"]) + MESSAGE_OVERHEAD for m in messages)


def chat_request(model: str, messages: list[dict], budget: Budget) -> dict:
    """The /api/chat body: the window and the reply length pinned to the budget."""
    return {"model": model, "messages": messages, "stream": False,
            "options": {"num_ctx": budget.prompt + budget.generation, "num_predict": budget.generation}}


def parse_chat_response(body: bytes | str) -> str:
    """The assistant's text from an /api/chat reply; OllamaError when there is none."""
    try:
        data = json.loads(body)
    except json.JSONDecodeError as exc:
        raise OllamaError(f"Ollama sent something that is not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise OllamaError("Ollama sent JSON that is not an object")
    if "error" in data:
        raise OllamaError(f"Ollama error: {data['error']}")
    content = (data.get("message") or {}).get("content")
    if not isinstance(content, str):
        raise OllamaError("Ollama reply has no message.content")
    return content


def next_step(answer: str) -> tuple[str, str | None]:
    """("done", None), ("search", words) or ("continue", None) from the model's answer."""
    lines = [line.strip() for line in answer.strip().splitlines() if line.strip()]
    for line in lines:
        if line.upper().startswith(SEARCH_PREFIX):
            words = line[len(SEARCH_PREFIX):].strip()
            if words:
                return "search", words
    if lines and lines[-1].upper().rstrip(".") == DONE_MARK:
        return "done", None
    return "continue", None


def call_ollama(url: str, request: dict, timeout: float = HTTP_TIMEOUT_SECONDS) -> str:
    """POST the chat request and return the reply text (network)."""
    req = urllib.request.Request(f"{url.rstrip('/')}/api/chat", data=json.dumps(request).encode(),
                                 headers={"Content-Type": "application/json"}, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as response:
            return parse_chat_response(response.read())
    except urllib.error.HTTPError as exc:
        return parse_chat_response(exc.read())
    except urllib.error.URLError as exc:
        raise OllamaError(f"cannot reach Ollama at {url}: {exc.reason}; is `ollama serve` running?") from None


# --------------------------------------------------------------------------- #
# the loop (network: the MCP server over stdio, and Ollama)
# --------------------------------------------------------------------------- #

def _server(workspace: str, index_dir: str | None):
    """The server beside this Python (not another ``codeahead`` on PATH), with the ``CODEAHEAD_*`` settings:
    the SDK starts a stdio server with only HOME, PATH, SHELL and TERM of this environment."""
    from mcp.client.stdio import StdioServerParameters

    args = ["serve", "--workspace", workspace, *(["--index-dir", index_dir] if index_dir else [])]
    env = {k: v for k, v in os.environ.items() if k.startswith("CODEAHEAD_")}
    exe = shutil.which("codeahead", path=str(Path(sys.executable).parent))
    if exe:
        return StdioServerParameters(command=exe, args=args, env=env)
    repo = Path(__file__).resolve().parents[1]
    return StdioServerParameters(command=sys.executable, args=["-m", "server.cli", *args], cwd=str(repo), env=env)


def _ollama_error(exc: BaseException) -> OllamaError | None:
    """The OllamaError inside ``exc``: the MCP client's task group wraps what its body raised in a group."""
    if isinstance(exc, OllamaError):
        return exc
    if isinstance(exc, BaseExceptionGroup):
        return next((found for e in exc.exceptions if (found := _ollama_error(e)) is not None), None)
    return None


async def run(task: str, workspace: str, model: str, url: str, task_id: str, index_dir: str | None = None) -> str:
    """Up to MAX_STEPS rounds of context -> prompt -> model; returns the last answer."""
    import anyio.to_thread
    from mcp.client import Client

    budget, count = split_budget(WINDOW), default_count()
    notes: list[str] = []
    query, answer = task, ""
    async with Client(_server(workspace, index_dir)) as mcp:
        await mcp.call_tool("record_event", {"type": "task_started", "task_id": task_id, "data": {"title": task}})
        for step in range(1, MAX_STEPS + 1):
            result = await mcp.call_tool("get_context", {"query": query, "task_id": task_id, "profile": PROFILE})
            context = "" if result.is_error else result.structured_content["text"]
            messages = build_messages(task, context, notes, budget, count)
            answer = await anyio.to_thread.run_sync(call_ollama, url, chat_request(model, messages, budget))
            print(f"--- step {step} ({prompt_tokens(messages, count)} prompt tokens)\n{answer}\n", flush=True)
            action, words = next_step(answer)
            summary = f"searched for {words}" if action == "search" else answer.strip()[:200] or "(empty)"
            await mcp.call_tool("record_event", {"type": "iteration", "task_id": task_id,
                                                 "data": {"n": step, "summary": summary}})
            if action == "done":
                break
            notes.append(summary)
            query = words or task
    return answer


def main() -> int:
    import anyio

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("task")
    parser.add_argument("--workspace", default=".")
    parser.add_argument("--model", default=DEFAULT_MODEL)
    parser.add_argument("--ollama", default=OLLAMA_URL)
    parser.add_argument("--task-id", default="ollama-agent")
    parser.add_argument("--index-dir", default=None, help="the index folder (default: the user cache folder)")
    args = parser.parse_args()
    try:
        anyio.run(run, args.task, str(Path(args.workspace).resolve()), args.model, args.ollama, args.task_id,
                  args.index_dir)
    except BaseException as exc:  # noqa: BLE001 - anything but Ollama's own error goes on up
        error = _ollama_error(exc)
        if error is None:
            raise
        print(f"ollama_agent: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
