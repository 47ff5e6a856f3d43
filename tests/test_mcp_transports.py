"""End to end through a spawned ``codeahead serve``: over stdio, and over HTTP with and without the token."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import anyio
import httpx2
import pytest
from mcp.client import Client
from mcp.client.stdio import StdioServerParameters
from mcp.client.streamable_http import streamable_http_client

from tests.conftest import write_tree
from tests.test_mcp import SHOP

pytestmark = pytest.mark.anyio

REPO = Path(__file__).resolve().parents[1]
TOKEN = "s3cret-token"
START_TIMEOUT = 30.0
TOOLS = {"get_context", "search_code", "related", "record_event", "task_state", "index_status", "predict_next"}


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def shop(tmp_path: Path) -> Path:
    return write_tree(tmp_path / "shop", SHOP)


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "CODEAHEAD_TOKEN"}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return env


@pytest.mark.parametrize("mode", ["auto", "legacy"])  # legacy: the initialize handshake editors use today
async def test_stdio_initialize_list_tools_get_context_and_overview(shop, tmp_path, mode):
    params = StdioServerParameters(
        command=sys.executable, args=["-m", "server.cli", "serve", "--workspace", str(shop),
                                      "--index-dir", str(tmp_path / "idx")], cwd=str(REPO), env=_env())
    with anyio.fail_after(START_TIMEOUT):
        async with Client(params, mode=mode) as client:
            assert client.server_info.name == "codeahead"
            tools = {t.name for t in (await client.list_tools()).tools}
            result = await client.call_tool("get_context", {"query": "cart total", "budget_tokens": 400})
            overview = (await client.read_resource("codeahead://overview")).contents[0].text
    assert tools == TOOLS
    assert not result.is_error
    assert "def total" in result.structured_content["text"]
    assert result.structured_content["tokens"] <= 400
    assert result.structured_content["freshness"]["generation"] >= 1
    assert "pkg/cart.py" in overview


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def http_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``codeahead serve --http --token`` on a free loopback port (one per module); yields its /mcp URL."""
    tmp_path = tmp_path_factory.mktemp("http")
    shop = write_tree(tmp_path / "shop", SHOP)
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "server.cli", "serve", "--http", "--port", str(port), "--token", TOKEN,
         "--workspace", str(shop), "--index-dir", str(tmp_path / "idx"), "--no-watch"],
        cwd=REPO, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise RuntimeError(f"server did not start: {proc.stderr.read().decode()[-2000:]}")
            time.sleep(0.1)
    try:
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        proc.stderr.close()


_PING = {"jsonrpc": "2.0", "id": 1, "method": "ping"}
_HEADERS = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}


@pytest.mark.parametrize("auth", [None, "Bearer wrong", f"Basic {TOKEN}"])
async def test_http_refuses_requests_without_the_right_token(http_server, auth):
    headers = dict(_HEADERS, **({"Authorization": auth} if auth else {}))
    async with httpx2.AsyncClient() as http:
        response = await http.post(http_server, json=_PING, headers=headers)
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer")


async def test_http_keeps_dns_rebinding_protection_behind_the_token(http_server):
    headers = dict(_HEADERS, Authorization=f"Bearer {TOKEN}", Host="evil.example:80")
    async with httpx2.AsyncClient() as http:
        response = await http.post(http_server, json=_PING, headers=headers)
    assert response.status_code in (403, 421)


async def test_http_works_with_the_token(http_server):
    with anyio.fail_after(START_TIMEOUT):
        async with httpx2.AsyncClient(headers={"Authorization": f"Bearer {TOKEN}"}) as http:
            async with Client(streamable_http_client(http_server, http_client=http)) as client:
                tools = {t.name for t in (await client.list_tools()).tools}
                result = await client.call_tool("search_code", {"query": "price of item", "top_k": 2})
    assert tools == TOOLS
    assert result.structured_content["hits"][0]["name"] == "pkg.prices.price_of"
