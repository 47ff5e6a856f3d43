"""Reading and parsing a pass's files, in a pool of worker processes.

A worker reads, hashes and parses one file and returns it in the form the writer stores
(``Parsed``): plain tuples and one msgpack blob. This module imports only what parsing needs
(tree-sitter, the walk's reader, terms and facts), not SQLite or sqlite-vec and numpy: the
forkserver imports it before the first worker can start, while the writer waits for the first
file (~0.2 s less of that wait on a cold index than importing the whole indexing module).
"""

from __future__ import annotations

import gc
import hashlib
import os
import re
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing import get_context
from multiprocessing.context import BaseContext

from indexer.graph.facts import facts_of
from indexer.parse import RecentTrees, language_of, parse_file
from indexer.terms import search_rows
from indexer.types import ParsedFile, Skipped, SkipReason
from indexer.walk import read_source

#: Below this many files to parse, a process pool costs more than it saves.
POOL_MIN_FILES = 48
_POOL_BATCH = 32
#: How often a worker checks that the process it parses for is still there.
_PARENT_POLL_S = 0.5
#: A carriage return not followed by a line feed.
_LONE_CR = re.compile(rb"\r(?!\n)")

Progress = Callable[[str, int, int], None]  # (phase, done, total)


@dataclass(frozen=True, slots=True)
class Parsed:
    """A parsed file in the form the writer stores, built in the worker.

    Plain tuples and one msgpack blob: pickling hundreds of thousands of dataclasses
    across the process pool cost ~4 CPU-seconds on Django.
    """

    language: str
    lines: int
    doc: str
    has_errors: bool
    #: (kind, name, local_name, parent index, start_line, end_line, signature, doc) per definition
    definitions: tuple[tuple, ...]
    facts: bytes  # FileFacts.to_blob(): imports (absolute), references, bases
    search_terms: tuple[tuple[str, str, str, str], ...]  # FTS (name, path, doc, body): module, then defs


@dataclass(frozen=True, slots=True)
class Loaded:
    """A worker's answer for one file."""

    path: str
    hash: str = ""
    text: str = ""
    parsed: Parsed | None = None
    skipped: Skipped | None = None
    unchanged: bool = False


def _content_hash(data: bytes) -> str:
    return hashlib.blake2b(data, digest_size=16).hexdigest()


def _for_writer(parsed: ParsedFile, module: str) -> Parsed:
    """What the writer needs of a parsed file: node rows, FTS rows and the resolution facts."""
    definitions = tuple((d.kind.value, d.name, d.local_name, d.parent, d.start_line, d.end_line, d.signature, d.doc)
                        for d in parsed.definitions)
    facts = facts_of(parsed, file_id=0, module=module, module_node=0, def_ids=()).to_blob()
    return Parsed(parsed.language, parsed.lines, parsed.doc, parsed.has_errors, definitions, facts,
                  tuple(search_rows(parsed, module)))


def load(root: str, path: str, known_hash: str | None, module: str, max_bytes: int,
         trees: RecentTrees | None = None) -> Loaded:
    """Read, hash and (if the hash changed) parse one file; never raises for a bad file."""
    data = read_source(root, path, max_bytes)
    if isinstance(data, Skipped):
        return Loaded(path, skipped=data)
    digest = _content_hash(data)
    if digest == known_hash:
        return Loaded(path, hash=digest, unchanged=True)
    if b"\r" in data:  # a lone CR ends a line for Python (old Mac files), not for tree-sitter
        data = _LONE_CR.sub(b"\n", data)
    language = language_of(path) or "python"
    try:
        parsed = parse_file(path, data, language, trees)
    except Exception as exc:  # an extractor bug must cost one file, not the pass
        return Loaded(path, skipped=Skipped(path, SkipReason.SYNTAX_ERROR, f"extractor failed: {exc}"))
    # The stored text is what contexts show: without a UTF-8 byte order mark (lines are counted the same).
    return Loaded(path, hash=digest, text=data.decode("utf-8", errors="replace").removeprefix("\ufeff"),
                  parsed=_for_writer(parsed, module))


Job = tuple[str, str | None, str]  # (path, known hash, module name)


def _load_batch(root: str, jobs: list[Job], max_bytes: int) -> list[Loaded]:
    return [load(root, path, known, module, max_bytes) for path, known, module in jobs]


def _start_worker(parent: int) -> None:
    """Initializer of a pool worker: no cyclic collector, and an exit once ``parent`` is gone.

    A worker lives for one pass and keeps nothing between files: it never needs the cyclic collector
    (see ``indexing.collector_paused``), not even at the end of a batch, where it would walk the whole
    batch. And it waits on the pool's queue, whose writing end it holds itself: when the parent is killed
    (an editor stopping its MCP server with SIGKILL, the OOM killer), no end of file tells it, and it and
    the fork server it keeps alive would stay for good.
    """
    gc.disable()
    threading.Thread(target=_exit_without, args=(parent,), name="codeahead-parent-check", daemon=True).start()


def _exit_without(parent: int) -> None:
    while _alive(parent):
        time.sleep(_PARENT_POLL_S)
    os._exit(1)


def _alive(pid: int) -> bool:
    """False once ``pid`` has ended, including as a zombie nobody reaped yet.

    A killed server stays a zombie while its own parent waits for its pipes to close before it reaps it
    (``subprocess.run`` does, an MCP client reading to the end of the output may): the pipes the workers
    hold open would then keep it a zombie for good.
    """
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, PermissionError):  # gone (or its pid is another user's process now)
        return False
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            return stat.read().rsplit(b")", 1)[1].split()[0] != b"Z"
    except (OSError, IndexError):  # no /proc here: the signal check has to do
        return True


def _pool_context() -> BaseContext:
    """Forkserver where there is one: the server imports the parser once, each worker forked from it has it."""
    if os.name != "posix":
        return get_context("spawn")
    context = get_context("forkserver")
    context.set_forkserver_preload([__name__])
    return context


def start_pool_server(workers: int) -> None:
    """Start the worker pool's fork server now, so that it imports the parser while the caller walks.

    A cold index then gets its first parsed file ~0.1 s sooner: the server's start and imports
    overlap the walk (one core) instead of following it. A no-op for one worker (``load_stream``
    parses in this process then), where there is no fork server, or when it runs already.
    """
    if workers > 1 and _pool_context().get_start_method() == "forkserver":
        from multiprocessing import forkserver  # POSIX only, like the start method

        forkserver.ensure_running()


def load_stream(root: str, jobs: list[Job], max_bytes: int, workers: int,
                progress: Progress | None, trees: RecentTrees | None = None) -> Iterator[Loaded]:
    """Load every job, in job order, yielding each file as soon as it is ready.

    The writer consumes the stream while the pool is still parsing, so inserts overlap the
    parse instead of following it. The pool stops when the stream ends or is closed. Files
    parsed here (a small pass) keep their trees in ``trees``; the pool's workers keep none.
    """
    total = len(jobs)
    if total < POOL_MIN_FILES or workers <= 1:
        for i, (path, known, module) in enumerate(jobs):
            yield load(root, path, known, module, max_bytes, trees)
            if progress and (i % 64 == 0 or i == total - 1):
                progress("parse", i + 1, total)
        return
    batches = [jobs[i : i + _POOL_BATCH] for i in range(0, total, _POOL_BATCH)]
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=_pool_context(), initializer=_start_worker,
                               initargs=(os.getpid(),))
    done = 0
    try:
        for result in pool.map(_load_batch, [root] * len(batches), batches, [max_bytes] * len(batches)):
            yield from result
            done += len(result)
            if progress:
                progress("parse", done, total)
    finally:  # a failed write must not wait for the rest of the parse
        pool.shutdown(wait=True, cancel_futures=True)
