"""Link resolution in forked children that share the writer's symbol table copy-on-write.

Once the bases table is complete, every file resolves independently against a fixed symbol
table, so a pass with many files (a cold index) splits them across child processes while the
writer stores the answers as they arrive. The children are forked: they read the table the
writer already holds instead of receiving a copy (shipping it to pool workers cost ~0.3 s of
unpacking per worker before the first answer). A child runs nothing but the resolver and a
pipe, never touches the database, and leaves with ``os._exit``.
"""

from __future__ import annotations

import fcntl
import gc
import json
import os
import pickle
import signal
import sys
from collections.abc import Iterator

from indexer.graph.facts import FileFacts
from indexer.graph.resolve import Resolution, Resolver, Symbols

#: One file's answer: (file id, edge rows (src, kind, dst, confidence) into code nodes, edge rows into
#: libraries (dst "lib:name", the writer gives out their node ids), the dependency keys as a JSON list).
#: Each row is unique. The keys go to SQLite as JSON text, which it splits itself (``json_each``):
#: binding Django's 154k (key, file) rows one by one cost the writer 0.52 CPU-s, this 0.25.
Links = tuple[int, list[tuple], list[tuple], str]
#: Files per message from a child: small enough that the writer's last batch is short.
CHUNK_FILES = 32
_PIPE_BYTES = 1 << 20  # Linux's default pipe-max-size


def can_fork() -> bool:
    """Whether resolution may fork: Linux only (macOS system frameworks are not fork-safe, Windows cannot)."""
    return sys.platform.startswith("linux") and hasattr(os, "fork")


def links_of(resolver: Resolver, facts: FileFacts, bases: Resolution | None = None) -> Links:
    """One file's links as rows (the same in a child and on the writer), with ``bases``, the file's
    inherits edges and lookups from the bases phase, merged in (its edges win on equal rows)."""
    found = Resolution()
    resolver.resolve_links(facts, found)
    edges, deps = found.edges, found.deps
    if bases is not None:
        edges.update(bases.edges)
        deps |= bases.deps
    code: list[tuple] = []
    libraries: list[tuple] = []
    for key, confidence in edges.items():
        (libraries if isinstance(key[2], str) else code).append((*key, confidence))
    return facts.file_id, code, libraries, json.dumps(sorted(deps))


def links_here(resolver: Resolver, files: list[FileFacts], bases: dict[int, Resolution]) -> Iterator[Links]:
    """Links of each file resolved in this process, each file released once resolved (peak memory)."""
    files.reverse()
    while files:
        facts = files.pop()
        yield links_of(resolver, facts, bases.get(facts.file_id))


def links_forked(symbols: Symbols, files: list[FileFacts], children: int,
                 bases: dict[int, Resolution]) -> Iterator[Links]:
    """Links of every file, in file order, resolved by ``children`` forked processes (``bases``: as in ``links_of``).

    Chunks go round-robin to the children and are read back in the same order, so the answers
    (and the ids of new library nodes the writer gives out) come in file order, as in one process.
    """
    chunks = [files[i : i + CHUNK_FILES] for i in range(0, len(files), CHUNK_FILES)]
    children = max(1, min(children, len(chunks)))
    running: list[tuple[int, object]] = []
    try:
        for k in range(children):
            read_fd, write_fd = os.pipe()
            _widen(write_fd)
            pid = os.fork()
            if pid == 0:  # the child: never returns
                _child(read_fd, write_fd, symbols, chunks[k::children], bases)
            os.close(write_fd)
            running.append((pid, os.fdopen(read_fd, "rb", buffering=_PIPE_BYTES)))
        for i in range(len(chunks)):
            pid, pipe = running[i % children]
            try:
                answer = pickle.load(pipe)
            except EOFError:
                raise RuntimeError(f"link resolution child {pid} died") from None
            chunks[i] = None  # the facts are no longer needed (peak memory)
            yield from answer
    finally:
        for pid, pipe in running:
            pipe.close()
            try:
                os.kill(pid, signal.SIGKILL)  # done or abandoned: it has nothing left to say
            except ProcessLookupError:
                pass
            os.waitpid(pid, 0)


def _widen(fd: int) -> None:
    """Let a child run ahead of the writer: a 64 KiB pipe holds less than one chunk's answers."""
    try:
        fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, _PIPE_BYTES)
    except (AttributeError, OSError):  # an older kernel or a lower pipe-max-size: the default pipe works
        pass


def _child(read_fd: int, write_fd: int, symbols: Symbols, chunks: list[list[FileFacts]],
           bases: dict[int, Resolution]) -> None:
    """Resolve ``chunks`` and pickle each chunk's answers to the pipe; then exit without cleanup."""
    code = 1
    try:
        os.close(read_fd)
        gc.disable()  # no collection, so no finalizer of an inherited object runs here
        resolver = Resolver(symbols)
        with os.fdopen(write_fd, "wb") as out:
            for chunk in chunks:
                answers = [links_of(resolver, facts, bases.get(facts.file_id)) for facts in chunk]
                pickle.dump(answers, out, pickle.HIGHEST_PROTOCOL)
                out.flush()  # the writer is waiting for this chunk
        code = 0
    finally:
        os._exit(code)
