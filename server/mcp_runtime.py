"""The workspace behind the MCP server: opened once, indexed in the background, watched.

Requests never wait for a whole index pass: they wait a few seconds for the
first one (reporting progress), then answer from the index as it was before the
pass (a pass commits at its end) and say so in ``freshness`` and in their errors.
Index passes and recorded events publish resource-updated events on the server's
subscription bus so listening clients can refetch.
"""

from __future__ import annotations

import logging
import threading
import time
import warnings
from collections.abc import Awaitable, Callable
from pathlib import Path
from urllib.parse import quote, unquote, urlparse

import anyio
import anyio.from_thread
import anyio.lowlevel
from mcp.server.subscriptions import ResourceUpdated, SubscriptionBus

from indexer.workspace import Workspace, WorkspaceError

log = logging.getLogger(__name__)

#: How long a request waits for the first index pass before answering from what is there.
WARMUP_WAIT_SECONDS = 5.0
#: A pass commits at its end: until then a new index answers as if the workspace were empty.
FIRST_PASS_NOTE = ("answers see the index as it was before the pass (empty for a new index), so code may be "
                   "missing: retry in a few seconds")
_POLL_SECONDS = 0.1
_ROOTS_TIMEOUT_SECONDS = 5.0
_JOIN_SECONDS = 30.0

OVERVIEW_URI = "codeahead://overview"
MODULE_URI = "codeahead://module/{}"
TASK_URI = "codeahead://task/{}"


def first_pass_text(phase: str, done: int, total: int) -> str:
    """What an answer says while the first index pass runs (errors, a context's last line, resources)."""
    where = f" ({phase} {done}/{total})" if total else ""
    return f"the first index pass is still running{where}: {FIRST_PASS_NOTE}"


def module_uri(path: str) -> str:
    """The module resource of ``path``, percent-encoded (a space or ``#`` in a path would break the URI)."""
    return MODULE_URI.format(quote(path, safe="/"))


def task_uri(task_id: str) -> str:
    """The task resource of ``task_id``, percent-encoded (``a/b`` names one task, not a path)."""
    return TASK_URI.format(quote(task_id, safe=""))

Report = Callable[[float, float | None, str | None], Awaitable[None]]


class IndexCancelled(Exception):
    """Raised from the progress callback to stop the first pass when the server shuts down."""


class Runtime:
    """One workspace shared by every session of one server process."""

    def __init__(self, workspace: Workspace | None = None, *, root: str | Path | None = None,
                 index_dir: str | Path | None = None, watch: bool = True) -> None:
        self._ws = workspace
        self._owns_ws = workspace is None
        self._root = Path(root) if root is not None else None
        self._index_dir = index_dir
        self._watch = watch
        self._lock = threading.Lock()
        self._open_lock: anyio.Lock | None = None
        self._ready = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._progress: tuple[str, int, int] = ("start", 0, 0)
        self._steps_before = 0  # steps of the finished phases: MCP progress must only grow
        self._steps = 0
        self._error: str | None = None
        self._bus: SubscriptionBus | None = None
        self._token = None
        self._users = 0

    def current(self) -> Workspace | None:
        """The open workspace, or None before the first request picked one."""
        return self._ws

    # ------------------------------------------------------------------ lifecycle
    def attach(self, bus: SubscriptionBus) -> None:
        """Called from the server's lifespan: remember where to publish, open the workspace if known."""
        self._bus = bus
        self._token = anyio.lowlevel.current_token()
        self._users += 1
        if self._ws is not None or self._root is not None:
            self._start(self._ws or self._open(self._root))

    def detach(self) -> None:
        """The last session ended: stop watching and close the workspace this runtime opened."""
        self._users -= 1
        if self._users > 0:
            return
        ws = self._ws
        if ws is None:
            return
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(_JOIN_SECONDS)
        ws.stop_watching()
        self._thread = None
        self._ready.clear()
        if self._owns_ws:
            ws.close()
            self._ws = None

    def _open(self, root: Path) -> Workspace:
        try:
            return Workspace(root, index_dir=self._index_dir)
        except WorkspaceError as exc:
            raise WorkspaceError(f"cannot open workspace: {exc}") from None

    def _start(self, ws: Workspace) -> None:
        """Index ``ws`` in a background thread (once), then start the watcher."""
        with self._lock:
            self._ws = ws
            if self._thread is not None:
                return
            self._stopping.clear()
            self._progress, self._steps_before, self._steps = ("start", 0, 0), 0, 0
            self._thread = threading.Thread(target=self._initial_index, name="codeahead-index", daemon=True)
            self._thread.start()

    def _initial_index(self) -> None:
        ws = self._ws
        assert ws is not None
        try:
            ws.index(progress=self._on_progress)
            log.info("initial index of %s done: generation %s", ws.root, ws.freshness()["generation"])
        except IndexCancelled:
            log.info("initial index of %s stopped: the server is shutting down", ws.root)
            return
        except Exception as exc:  # noqa: BLE001 - the server keeps answering from the old index
            self._error = f"initial index failed: {exc}"
            log.exception("initial index of %s failed", ws.root)
        finally:
            self._ready.set()
        self._publish([OVERVIEW_URI])
        if self._stopping.is_set():
            return
        if self._watch:  # first: a save during the slower steps below must not be missed
            ws.start_watching(on_applied=self._on_applied)
        ws.warm()  # postings, edges and the symbol table, in the background: requests read SQLite until then
        ws.enable_vectors()  # in the background: search improves when vectors land
        self._mine_history()  # before the warm-up fills the caches
        warm_up(ws)
        ws.enable_prefetch()

    def _on_progress(self, phase: str, done: int, total: int) -> None:
        if self._stopping.is_set():
            raise IndexCancelled  # the engine rolls the pass back; the next start resumes it
        last_phase, _, last_total = self._progress
        if phase != last_phase:
            self._steps_before += last_total
        self._progress = (phase, done, total)
        self._steps = self._steps_before + done

    def _on_applied(self, batch, result) -> None:
        """A watcher batch landed: the overview and each touched module changed."""
        paths = sorted(batch.changed | batch.deleted)
        self._publish([OVERVIEW_URI, *(module_uri(p) for p in paths)])

    def _mine_history(self) -> None:
        """The commit history for ranking and co-change; from here on the watcher follows HEAD."""
        ws = self._ws
        if ws is None:
            return
        try:
            ws.mine_history()
            ws.predictor.mine_git(ws.root)
        except Exception:  # noqa: BLE001 - ranking and prediction work without history
            log.warning("could not mine the git history of %s", ws.root, exc_info=True)

    # ------------------------------------------------------------------ notifications
    def _publish(self, uris: list[str]) -> None:
        """Publish resource-updated events from a worker thread onto the server's event loop."""
        if self._bus is None or self._token is None:
            return
        bus = self._bus

        async def send() -> None:
            for uri in uris:
                await bus.publish(ResourceUpdated(uri=uri))

        try:
            anyio.from_thread.run(send, token=self._token)
        except Exception as exc:  # noqa: BLE001 - the loop may be gone at shutdown
            log.debug("could not publish %s: %s", uris, exc)

    async def publish(self, uri: str) -> None:
        """Publish one resource-updated event from the event loop."""
        if self._bus is not None:
            await self._bus.publish(ResourceUpdated(uri=uri))

    # ------------------------------------------------------------------ requests
    async def workspace(self, ctx=None, report: Report | None = None) -> Workspace:
        """The workspace, opened from the client's roots (else the current folder) on first use."""
        if self._ws is None:
            if self._open_lock is None:
                self._open_lock = anyio.Lock()
            async with self._open_lock:
                if self._ws is None:
                    root = await _client_root(ctx)
                    if root is None:  # said where it shows: a client on the current handshake sends no roots
                        root = Path.cwd()
                        log.warning("no --workspace and no client root: serving the current folder %s", root)
                    else:
                        log.info("workspace %s (the client's first root)", root)
                    self._start(await anyio.to_thread.run_sync(self._open, root))
        await self._warm_up(report)
        assert self._ws is not None
        return self._ws

    async def _warm_up(self, report: Report | None) -> None:
        """Wait up to WARMUP_WAIT_SECONDS for the first index pass, reporting its progress."""
        deadline = time.monotonic() + WARMUP_WAIT_SECONDS
        reported = -1
        while not self._ready.is_set() and time.monotonic() < deadline:
            phase, done, total = self._progress
            steps = self._steps
            if report is not None and steps > reported:
                reported = steps
                await report(steps, None, f"indexing: {phase} {done}/{total}")
            await anyio.sleep(_POLL_SECONDS)

    def first_pass_note(self) -> str | None:
        """While the first index pass runs, what an answer must say: the index it read is not complete."""
        if self._ready.is_set():
            return None
        return first_pass_text(*self._progress)

    def freshness(self) -> dict:
        """The index's freshness plus whether the first pass is still running."""
        ws = self._ws
        fresh = dict(ws.freshness()) if ws is not None else {"generation": 0, "last_change": None,
                                                              "pending_changes": 0}
        running = not self._ready.is_set()
        fresh["indexing"] = bool(fresh.get("indexing")) or running
        if running:
            phase, done, total = self._progress
            fresh["initial_index"] = {"phase": phase, "done": done, "total": total, "note": FIRST_PASS_NOTE}
        if self._error:
            fresh["error"] = self._error
        return fresh


async def _client_root(ctx) -> Path | None:
    """The first file:// root the client lists, on connections that still offer roots/list."""
    if ctx is None:
        return None
    try:
        session = ctx.session
        caps = session.client_capabilities
        if caps is None or caps.roots is None or not session.can_send_request:
            return None
        with anyio.fail_after(_ROOTS_TIMEOUT_SECONDS), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # roots/list is deprecated in 2026-07-28, still what editors send
            result = await session.list_roots()
    except Exception as exc:  # noqa: BLE001 - no roots: fall back to the current folder
        log.info("client roots unavailable (%s); using the current folder", exc)
        return None
    for root in result.roots:
        url = urlparse(str(root.uri))
        if url.scheme == "file" and Path(unquote(url.path)).is_dir():
            return Path(unquote(url.path))
    return None


#: Module summaries built into the cache when a workspace opens.
WARM_UP_MODULES = 20


def warm_up(ws: Workspace, limit: int = WARM_UP_MODULES) -> int:
    """Build the summaries of the most imported modules into the cache (the likeliest first reads)."""
    central = [r[0] for r in ws.reader().execute(
        "SELECT f.path FROM edges e JOIN nodes n ON n.id = e.dst JOIN files f ON f.id = n.file_id "
        "WHERE e.kind = 'imports' AND n.kind = 'module' GROUP BY n.id ORDER BY count(*) DESC, f.path LIMIT ?",
        (limit,))]
    with ws.unobserved():  # the server's guesses, not the agent's moves
        for path in central:
            ws.module_summary(path)
    return len(central)
