"""Start ``codeahead serve`` over stdio and call each tool once, printing what comes back.

    python examples/stdio_client.py [WORKSPACE] [--index-dir DIR] [--query WORDS]

Uses the ``codeahead`` command of this Python environment if installed, else ``python -m server.cli``
from this checkout.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

import anyio
from mcp.client import Client
from mcp.client.stdio import StdioServerParameters

REPO = Path(__file__).resolve().parents[1]
PREVIEW_CHARS = 600


def server_command(workspace: str, index_dir: str | None) -> StdioServerParameters:
    """How to launch the server: the command installed beside this Python, else this checkout's module.

    Only this interpreter's environment is searched: a ``codeahead`` elsewhere on PATH may be
    another version (or an editable install whose checkout is gone).
    """
    args = ["serve", "--workspace", workspace, *(["--index-dir", index_dir] if index_dir else [])]
    exe = shutil.which("codeahead", path=str(Path(sys.executable).parent))
    if exe:
        return StdioServerParameters(command=exe, args=args)
    return StdioServerParameters(command=sys.executable, args=["-m", "server.cli", *args], cwd=str(REPO))


def preview(result) -> str:
    """The first characters of a tool answer (the error text when it failed)."""
    text = result.content[0].text if result.content else ""
    return ("ERROR " if result.is_error else "") + text[:PREVIEW_CHARS]


async def main(workspace: str, index_dir: str | None, query: str) -> None:
    async with Client(server_command(workspace, index_dir)) as client:
        tools = [t.name for t in (await client.list_tools()).tools]
        print("tools:", ", ".join(tools))
        status = await client.call_tool("index_status", {})
        print("\n# index_status\n", preview(status))

        hits = await client.call_tool("search_code", {"query": query, "top_k": 5})
        print("\n# search_code\n", preview(hits))
        first = (hits.structured_content or {}).get("hits") or [{}]
        target = first[0].get("name")

        context = await client.call_tool("get_context", {"query": query, "profile": "ollama-4k"})
        print("\n# get_context\n", preview(context))
        related = preview(await client.call_tool("related", {"target": target})) if target else "(no hits)"
        print("\n# related\n", related)

        event = {"type": "task_started", "task_id": "demo", "data": {"title": "try the tools"}}
        print("\n# record_event\n", preview(await client.call_tool("record_event", event)))
        print("\n# task_state\n", preview(await client.call_tool("task_state", {"task_id": "demo"})))

        overview = await client.read_resource("codeahead://overview")
        print("\n# codeahead://overview\n", overview.contents[0].text[:PREVIEW_CHARS])
        prompt = await client.get_prompt("implement", {"feature": "a --version flag"})
        print("\n# prompt implement\n", prompt.messages[0].content.text[:PREVIEW_CHARS])
        print("\n# freshness\n", json.dumps(status.structured_content["freshness"]))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("workspace", nargs="?", default=".")
    parser.add_argument("--index-dir", default=None)
    parser.add_argument("--query", default="main entry point", help="what to search and pack context for")
    args = parser.parse_args()
    anyio.run(main, str(Path(args.workspace).resolve()), args.index_dir, args.query)
