"""The codeahead MCP server: tools, resources and prompts over stdio or streamable HTTP.

``build_server`` assembles an ``MCPServer`` around one workspace (``Runtime``);
``serve`` is what ``codeahead serve`` runs. Logs go to stderr: on stdio, stdout
is the protocol.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import logging
import os
import socket
import sys
import weakref
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.server.subscriptions import InMemorySubscriptionBus
from mcp.server.transport_security import TransportSecuritySettings
from mcp.shared.exceptions import MCPError
from mcp_types import INVALID_PARAMS
from pydantic import ValidationError
from starlette.types import ASGIApp, Receive, Scope, Send

from indexer.cache.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from indexer.cache.metrics import dashboard_html, render_prometheus
from indexer.workspace import Workspace, WorkspaceError
from server.mcp_content import register_prompts, register_resources
from server.mcp_output import DEFAULT_CAP
from server.mcp_runtime import Runtime
from server.mcp_tools import one_line, register_tools

log = logging.getLogger(__name__)

TOKEN_ENV = "CODEAHEAD_TOKEN"
#: The runtime behind each server built here (the HTTP app's /metrics and /dashboard read it).
_RUNTIMES: "weakref.WeakKeyDictionary[MCPServer, Runtime]" = weakref.WeakKeyDictionary()
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")
WILDCARD_HOSTS = ("0.0.0.0", "::", "")
_INSTRUCTIONS = (
    "codeahead knows this workspace's code graph. Call get_context first (a query, a focus path/symbol "
    "or a task_id) to get the relevant code within a token budget; search_code to locate; related for "
    "callers/callees/tests; record_event to log what you do so later context follows your task."
)


def build_server(workspace: Workspace | None = None, *, root: str | Path | None = None,
                 index_dir: str | Path | None = None, watch: bool = True,
                 output_cap_tokens: int = DEFAULT_CAP) -> MCPServer:
    """An MCP server over ``workspace`` (or ``root``; else the client's roots, else the current folder)."""
    if output_cap_tokens < 1:
        raise ValueError(f"output_cap_tokens must be >= 1, not {output_cap_tokens}")
    runtime = Runtime(workspace, root=root, index_dir=index_dir, watch=watch)
    bus = InMemorySubscriptionBus()

    @asynccontextmanager
    async def lifespan(_: MCPServer) -> AsyncIterator[dict]:
        runtime.attach(bus)
        try:
            yield {}
        finally:
            await anyio.to_thread.run_sync(runtime.detach)

    server = _Server("codeahead", instructions=_INSTRUCTIONS, version=_version(), lifespan=lifespan,
                     subscriptions=bus, log_level="WARNING")
    _RUNTIMES[server] = runtime
    register_tools(server, runtime, output_cap_tokens)
    register_resources(server, runtime, output_cap_tokens)
    register_prompts(server, runtime, output_cap_tokens)
    return server


class _Server(MCPServer):
    """The SDK's server, with bad arguments reported as such, in one line.

    A missing or unexpected argument, or an unknown prompt name, came back as -32603 "Internal server error"
    (the SDK turns every prompt failure into one), where the tools and resources answer -32602 with the reason.
    The prompts' own checks raise MCPError, which passes through unchanged.
    """

    async def get_prompt(self, name, arguments=None, context=None):
        try:
            return await super().get_prompt(name, arguments, context)
        except ValueError as exc:
            raise MCPError(INVALID_PARAMS, one_line(exc)) from None

    async def call_tool(self, name, arguments, context=None):
        """Arguments that fail the input schema are said in one line, like the tools' own errors (pydantic's
        text took four lines and a link per field), and so are arguments the tool does not take: ignored,
        ``budget`` for ``budget_tokens`` silently packed the default budget."""
        tool = self._tool_manager.get_tool(name)
        if tool is not None and arguments:
            known = set(tool.parameters.get("properties", {}))
            unknown = sorted(set(arguments) - known)
            if unknown:
                raise ToolError(f"Error executing tool {name}: unknown argument{'s' * (len(unknown) > 1)} "
                                f"{', '.join(unknown)}; it takes {', '.join(sorted(known))}")
        try:
            return await super().call_tool(name, arguments, context)
        except ToolError as exc:
            if not isinstance(exc.__cause__, ValidationError):
                raise
            fields = "; ".join(f"{'.'.join(str(part) for part in e['loc']) or 'arguments'}: {e['msg']}"
                               for e in exc.__cause__.errors())
            raise ToolError(f"Error executing tool {name}: {fields}") from exc.__cause__


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("codeahead")
    except PackageNotFoundError:
        return "0+local"


# --------------------------------------------------------------------------- #
# HTTP: bearer token and DNS-rebinding protection
# --------------------------------------------------------------------------- #

class BearerToken:
    """ASGI middleware: HTTP requests need ``Authorization: Bearer <token>``; lifespan passes through."""

    def __init__(self, app: ASGIApp, token: str) -> None:
        self.app = app
        self._expected = token.encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            got = dict(scope.get("headers") or ()).get(b"authorization", b"")
            scheme, _, credentials = got.strip().partition(b" ")
            # The scheme's case does not matter (RFC 7235), the token's does.
            if scheme.lower() != b"bearer" or not hmac.compare_digest(credentials.strip(), self._expected):
                await _unauthorized(send)
                return
        await self.app(scope, receive, send)


#: A JSON-RPC error: MCP clients show the message of such a body, and only a generic error for any other.
_UNAUTHORIZED = json.dumps({"jsonrpc": "2.0", "id": None, "error": {
    "code": -32001, "message": "unauthorized: send Authorization: Bearer <token> (codeahead serve --token)"}}).encode()


async def _unauthorized(send: Send) -> None:
    await send({"type": "http.response.start", "status": 401, "headers": [
        (b"content-type", b"application/json"), (b"www-authenticate", b'Bearer realm="codeahead"'),
        (b"content-length", str(len(_UNAUTHORIZED)).encode())]})
    await send({"type": "http.response.body", "body": _UNAUTHORIZED})


def transport_security(host: str, allow_hosts: tuple[str, ...] = ()) -> TransportSecuritySettings:
    """DNS-rebinding protection always on: loopback names, ``host`` itself when it is another address, the
    names the user allows, and for a bind to every address (``0.0.0.0``, ``::``) this machine's name and
    addresses, the only ones a client can reach it by."""
    names = ["127.0.0.1", "localhost", "[::1]"]
    if host in WILDCARD_HOSTS:
        names += _this_machine()
    elif host not in LOOPBACK_HOSTS:
        names.append(_bracketed(host))
    names += [_bracketed(h) for h in allow_hosts]
    names = list(dict.fromkeys(names))
    return TransportSecuritySettings(enable_dns_rebinding_protection=True, allowed_hosts=[f"{n}:*" for n in names],
                                     allowed_origins=[f"http://{n}:*" for n in names])


def _bracketed(host: str) -> str:
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


def _this_machine() -> list[str]:
    """This machine's names and interface addresses (Linux; elsewhere its names and what they resolve to)."""
    name = socket.gethostname()
    found = [name, socket.getfqdn()]
    try:
        found += [info[4][0] for info in socket.getaddrinfo(name, None)]
    except OSError:
        pass
    found += _interface_addresses()
    return [_bracketed(n) for n in found]


def _interface_addresses() -> list[str]:
    out: list[str] = []
    try:
        import fcntl
        import struct

        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            for _, interface in socket.if_nameindex():
                try:  # SIOCGIFADDR: the interface's IPv4 address
                    packed = fcntl.ioctl(probe.fileno(), 0x8915, struct.pack("256s", interface[:15].encode()))
                    out.append(socket.inet_ntoa(packed[20:24]))
                except OSError:
                    continue  # no IPv4 address
    except (ImportError, OSError):
        pass
    try:
        for line in Path("/proc/net/if_inet6").read_text().splitlines():
            digits = line.split()[0]
            out.append(str(ipaddress.IPv6Address(bytes.fromhex(digits))))
    except (OSError, ValueError, IndexError):
        pass
    return out


def _host_allowed(scope: Scope, settings: TransportSecuritySettings) -> bool:
    """The Host header check of the MCP endpoint, for the routes beside it."""
    host = dict(scope.get("headers") or ()).get(b"host", b"").decode("latin-1")
    return any(host == allowed or (allowed.endswith(":*") and host.startswith(allowed[:-1]))
               for allowed in settings.allowed_hosts)


class Observability:
    """ASGI routes beside ``/mcp``: ``GET /metrics`` (Prometheus text) and ``GET /dashboard`` (HTML plots)."""

    def __init__(self, app: ASGIApp, runtime: Runtime, security: TransportSecuritySettings) -> None:
        self.app = app
        self.runtime = runtime
        self.security = security

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path") if scope["type"] == "http" else None
        if path in ("/metrics", "/dashboard") and scope.get("method") == "GET":
            if not _host_allowed(scope, self.security):  # a rebound name must not read them either
                await send({"type": "http.response.start", "status": 421, "headers": [(b"content-length", b"19")]})
                await send({"type": "http.response.body", "body": b"Invalid Host header"})
                return
            ws = self.runtime.current()
            if path == "/metrics":
                body = render_prometheus(ws.cache.stats() if ws else {"tiers": {}}).encode()
                content_type = METRICS_CONTENT_TYPE
            else:
                body = dashboard_html(ws.cache.history() if ws else [], ws.prediction_history() if ws else [],
                                      refresh_seconds=30).encode()
                content_type = "text/html; charset=utf-8"
            await send({"type": "http.response.start", "status": 200, "headers": [
                (b"content-type", content_type.encode()), (b"content-length", str(len(body)).encode())]})
            await send({"type": "http.response.body", "body": body})
            return
        await self.app(scope, receive, send)


def http_app(server: MCPServer, *, host: str, token: str | None, allow_hosts: tuple[str, ...] = ()) -> ASGIApp:
    """The streamable-HTTP app at ``/mcp`` with ``/metrics`` and ``/dashboard``, behind the bearer token if set."""
    security = transport_security(host, allow_hosts)
    app: ASGIApp = server.streamable_http_app(transport_security=security, host=host)
    app = Observability(app, _RUNTIMES[server], security)
    return BearerToken(app, token) if token else app


# --------------------------------------------------------------------------- #
# codeahead serve
# --------------------------------------------------------------------------- #

class ServeError(Exception):
    """Bad input to ``serve`` (a folder, an index, a port): one line, exit status 2."""


def serve(*, workspace: str | None, index_dir: str | None, http: bool, host: str, port: int,
          token: str | None, watch: bool, allow_hosts: tuple[str, ...] = ()) -> None:
    """Run the server until the client disconnects (stdio) or Ctrl-C (HTTP)."""
    logging.basicConfig(stream=sys.stderr, level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    root = Path(workspace).expanduser().resolve() if workspace else None
    if root is not None:  # a bad folder, index folder or embedder is one line here, not a session's traceback
        try:
            Workspace(root, index_dir=index_dir).close()
        except WorkspaceError as exc:
            raise ServeError(str(exc)) from None
    if http:
        _check_port(host, port)  # before the banner: a port in use is said in one line, not after it
    server = build_server(root=root, index_dir=index_dir, watch=watch)
    if not http:
        server.run("stdio")
        return
    token = token or os.environ.get(TOKEN_ENV) or None
    if host not in LOOPBACK_HOSTS and not token:
        log.warning("serving on %s without a token: anyone who can reach it can read this workspace", host)
    import uvicorn

    sys.stderr.write(f"codeahead: MCP over HTTP at http://{host}:{port}/mcp"
                     f"{' (bearer token required)' if token else ''}\n")
    uvicorn.run(http_app(server, host=host, token=token, allow_hosts=allow_hosts), host=host, port=port,
                log_level="warning")


def _check_port(host: str, port: int) -> None:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise ServeError(f"cannot serve on {host}: {exc}") from None
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
        try:
            probe.bind(address)
        except OSError as exc:
            raise ServeError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
