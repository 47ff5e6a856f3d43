"""The examples: editor configs parse, the stdio client runs, and the Ollama agent's offline parts are right."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from indexer import tokens
from tests.conftest import write_tree
from tests.test_mcp import SHOP

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
SERVE_ARGS = ["codeahead", "serve", "--workspace"]


def _load(name: str):
    spec = importlib.util.spec_from_file_location(f"examples_{name}", EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[f"examples_{name}"] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


agent = _load("ollama_agent")


@pytest.mark.parametrize(("name", "key"), [("claude_desktop_config.json", "mcpServers"),
                                           ("cursor-mcp.json", "mcpServers"), ("vscode-mcp.json", "servers")])
def test_editor_configs_launch_codeahead_serve(name, key):
    server = json.loads((EXAMPLES / name).read_text())[key]["codeahead"]
    assert server["args"][2:5] == SERVE_ARGS
    assert server["command"] == "uvx"


def test_split_budget_is_20_50_30_of_the_window():
    budget = agent.split_budget(4096)
    assert (budget.system, budget.context, budget.generation) == (819, 2048, 1229)
    assert budget.prompt + budget.generation == 4096
    with pytest.raises(ValueError, match="too small"):
        agent.split_budget(5)


def test_fit_trims_to_the_limit_and_marks_the_cut():
    text = "def f():\n    return 1\n" * 500
    cut = agent.fit(text, 100, tokens.count)
    assert tokens.count(cut) <= 100 and cut.endswith(agent.CUT.strip()) and text.startswith(cut[:50])
    assert agent.fit("short", 100, tokens.count) == "short"
    assert agent.fit(text, 2, tokens.count) == ""


@pytest.mark.parametrize("context_tokens", [0, 500, 20_000])
def test_messages_fit_the_prompt_share_and_leave_the_generation_share(context_tokens):
    budget = agent.split_budget(4096)
    context = "x = compute(y)\n" * (context_tokens // 5)
    messages = agent.build_messages("fix the cart", context, ["looked at cart.py"] * 3, budget, tokens.count)
    assert agent.prompt_tokens(messages, tokens.count) <= budget.prompt
    assert [m["role"] for m in messages] == ["system", "user"]
    assert "Task: fix the cart" in messages[1]["content"] and "looked at cart.py" in messages[1]["content"]
    request = agent.chat_request("m", messages, budget)
    assert request["options"] == {"num_ctx": 4096, "num_predict": 1229} and request["stream"] is False


def test_character_estimate_counts_high_when_the_tokenizer_is_missing():
    estimate = lambda text: -(-len(text) // agent.CHARS_PER_TOKEN_FLOOR)  # noqa: E731 - same rule as default
    sample = (EXAMPLES / "ollama_agent.py").read_text()
    assert estimate(sample) >= tokens.count(sample)


def test_parse_chat_response():
    ok = json.dumps({"model": "m", "message": {"role": "assistant", "content": "hello"}, "done": True})
    assert agent.parse_chat_response(ok) == "hello"
    for body, message in [('{"error": "model not found"}', "model not found"), ("<html>", "not JSON"),
                          ("[1]", "not an object"), ('{"message": {}}', "no message.content")]:
        with pytest.raises(agent.OllamaError, match=message):
            agent.parse_chat_response(body)


@pytest.mark.parametrize(("answer", "step"), [
    ("The bug is in cart.py:7.\nDONE", ("done", None)),
    ("I need more.\nSEARCH: price_of KeyError", ("search", "price_of KeyError")),
    ("search: discounts", ("search", "discounts")),
    ("Still thinking", ("continue", None)),
    ("SEARCH:", ("continue", None)),
])
def test_next_step(answer, step):
    assert agent.next_step(answer) == step


def test_call_ollama_says_when_it_is_not_running():
    with pytest.raises(agent.OllamaError, match="cannot reach Ollama"):
        agent.call_ollama("http://127.0.0.1:9", {"model": "m", "messages": []}, timeout=2)


def test_ollama_agent_says_in_one_line_when_ollama_is_not_running_and_keeps_its_index_where_told(tmp_path):
    shop = write_tree(tmp_path / "shop", SHOP)
    env = dict(os.environ, PYTHONPATH=str(EXAMPLES.parent), CODEAHEAD_EMBEDDER="none")
    out = subprocess.run([sys.executable, str(EXAMPLES / "ollama_agent.py"), "why does total fail?", "--workspace",
                          str(shop), "--index-dir", str(tmp_path / "idx"), "--ollama", "http://127.0.0.1:9"],
                         capture_output=True, text=True, timeout=120, env=env, cwd=tmp_path)
    assert out.returncode == 1 and "Traceback" not in out.stderr, out.stderr[-2000:]
    assert out.stderr.strip().splitlines()[-1].startswith("ollama_agent: cannot reach Ollama at http://127.0.0.1:9")
    assert (tmp_path / "idx" / "index.db").exists()


def test_stdio_client_example_calls_every_tool(tmp_path):
    shop = write_tree(tmp_path / "shop", SHOP)
    env = dict(os.environ, PYTHONPATH=str(EXAMPLES.parent))
    out = subprocess.run([sys.executable, str(EXAMPLES / "stdio_client.py"), str(shop), "--index-dir",
                          str(tmp_path / "idx"), "--query", "cart total"], capture_output=True, text=True, timeout=60, env=env,
                         cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    for section in ("# index_status", "# search_code", "# get_context", "# related", "# record_event",
                    "# task_state", "# codeahead://overview", "# prompt implement", "# freshness"):
        assert section in out.stdout
    assert "ERROR" not in out.stdout and "(no hits)" not in out.stdout
