"""End to end through a spawned ``codeahead serve``: over stdio, and over HTTP with and without the token."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
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


@contextmanager
def _http_serving(tmp_path: Path, port: int, *extra: str) -> Iterator[str]:
    """``codeahead serve --http --token`` with ``extra`` arguments, until the block ends; yields its loopback URL."""
    shop = write_tree(tmp_path / "shop", SHOP)
    proc = subprocess.Popen(
        [sys.executable, "-m", "server.cli", "serve", "--http", "--port", str(port), "--token", TOKEN,
         "--workspace", str(shop), "--index-dir", str(tmp_path / "idx"), "--no-watch", *extra],
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


@pytest.fixture(scope="module")
def http_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``codeahead serve --http --token`` on a free loopback port (one per module); yields its /mcp URL."""
    with _http_serving(tmp_path_factory.mktemp("http"), _free_port()) as url:
        yield url


_PING = {"jsonrpc": "2.0", "id": 1, "method": "ping"}
_HEADERS = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}


@pytest.mark.parametrize("auth", [None, "Bearer wrong", f"Basic {TOKEN}"])
async def test_http_refuses_requests_without_the_right_token(http_server, auth):
    headers = dict(_HEADERS, **({"Authorization": auth} if auth else {}))
    async with httpx2.AsyncClient() as http:
        response = await http.post(http_server, json=_PING, headers=headers)
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer")


async def test_http_refusal_is_a_json_rpc_error_a_client_can_show(http_server):
    async with httpx2.AsyncClient() as http:
        response = await http.post(http_server, json=_PING, headers=_HEADERS)
    body = response.json()
    assert body["jsonrpc"] == "2.0" and "Authorization: Bearer" in body["error"]["message"]


async def test_http_takes_the_auth_scheme_in_any_case(http_server):
    async with httpx2.AsyncClient() as http:
        response = await http.post(http_server, json=_PING, headers=dict(_HEADERS, Authorization=f"bearer {TOKEN}"))
    assert response.status_code not in (401, 421)  # past the token and the host check (a bare ping has no session)


async def test_http_dashboard_and_metrics_refuse_a_rebound_host_name(http_server):
    base = http_server.removesuffix("/mcp")
    auth = {"Authorization": f"Bearer {TOKEN}"}
    async with httpx2.AsyncClient(headers=auth) as http:
        assert (await http.get(f"{base}/dashboard")).status_code == 200
        for path in ("/dashboard", "/metrics"):
            assert (await http.get(f"{base}{path}", headers={"Host": "evil.example"})).status_code == 421


def _machine_ipv4() -> str | None:
    from server.mcp_server import _interface_addresses

    return next((a for a in _interface_addresses() if "." in a and not a.startswith("127.")), None)


async def test_http_on_every_address_answers_by_this_machines_address_and_allowed_names(tmp_path):
    address = _machine_ipv4()
    if address is None:
        pytest.skip("this machine has no address but loopback")
    port = _free_port()
    with _http_serving(tmp_path, port, "--host", "0.0.0.0", "--allow-host", "codeahead.lan"):
        async with httpx2.AsyncClient(headers=dict(_HEADERS, Authorization=f"Bearer {TOKEN}")) as http:
            # Past the host check (421) and the token (401); a bare ping has no session.
            assert (await http.post(f"http://{address}:{port}/mcp", json=_PING)).status_code not in (401, 421)
            named = await http.post(f"http://127.0.0.1:{port}/mcp", json=_PING,
                                    headers={"Host": f"codeahead.lan:{port}"})
            assert named.status_code not in (401, 421)
            rebound = await http.post(f"http://127.0.0.1:{port}/mcp", json=_PING,
                                      headers={"Host": f"evil.example:{port}"})
            assert rebound.status_code == 421


@pytest.mark.parametrize("make_args, says", [
    (lambda tmp, port: ["--workspace", ""], "--workspace is empty"),
    (lambda tmp, port: ["--workspace", str(tmp / "missing")], "missing"),
    (lambda tmp, port: ["--http", "--port", str(port), "--workspace", str(tmp)], "cannot listen on 127.0.0.1:"),
])
def test_serve_refuses_bad_input_in_one_line_with_status_2(tmp_path, make_args, says):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        args = make_args(tmp_path, busy.getsockname()[1])
        out = subprocess.run([sys.executable, "-m", "server.cli", "serve", "--index-dir", str(tmp_path / "idx"),
                              *args], cwd=REPO, env=_env(), capture_output=True, text=True, timeout=60,
                             stdin=subprocess.DEVNULL)
    assert out.returncode == 2 and says in out.stderr and len(out.stderr.strip().splitlines()) == 1, out.stderr
    assert "MCP over HTTP" not in out.stderr


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
