"""``Workspace``: the one object that ties the engine together for a folder of code.

The MCP server and the CLI are thin calls on it. It owns one writer connection
(index passes, events) and hands each reading thread its own connection, so a
query during a re-index reads the last committed snapshot (WAL), never half a pass.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from indexer import git, sqlite, tokens
from indexer.allocator import pin_mmap_threshold
from indexer.cache import (INDEX_DEP, MISSING, SqliteBackend, TieredCache, index_versions, make_key, task_dep,
                           workspace_id)
from indexer.config import DB_NAME, EMBEDDER_ENV, default_index_dir
from indexer.context.assemble import BREADTH_HITS, Assembler, Request
from indexer.context.overview import overview as build_overview
from indexer.context.packer import pack
from indexer.context.render import SourceCache, SourceLines, module_summary
from indexer.events import Event, EventLog, TaskState
from indexer.graph import query
from indexer.indexing import IndexPass, Progress, snapshot_symbols
from indexer.locks import index_lock

#: The progress phase reported while another process's index pass holds the index.
WAITING_PHASE = "waiting"
from indexer.search import history, hybrid
from indexer.search.embed import get_embedder
from indexer.search.edges import EdgeMemory
from indexer.search.lexical import DocFrequencies
from indexer.search.postings import PostingMemory
from indexer.search.vectors import stored_progress
from indexer.store.schema import open_database
from indexer.types import IndexStats, Link, Node, PackedContext, SearchHit
from indexer.walk import DEFAULT_MAX_BYTES, IgnoreRules

log = logging.getLogger(__name__)

#: Task events that name a file the agent moved to.
_FILE_EVENTS = ("file_opened", "file_edited", "module_started")
#: A watcher batch of at most this many saved files counts as navigation (more is a checkout or a formatter).
_EDITS_AS_NAVIGATION = 3
_SAVE_EVERY = 20  # observations between saves of the prediction model
#: Files prefetched after each move. Consecutive predictions overlap, so 20 costs ~5.3 builds per file opened (~40 ms
#: each on Django) and serves 82.9% of the next requests on the agent traces, against 69.9% at 5 (benchmarks/README.md).
PREFETCH_TOP_K = 20


class WorkspaceError(Exception):
    """A workspace that cannot be opened as asked; the message says what to do."""


def _split_line(target: str) -> tuple[str, int | None]:
    """``path:line`` as (path, line); any other target as (target, None)."""
    head, sep, line = target.rpartition(":")
    return (head, int(line)) if sep and head and line.isdigit() else (target, None)


class Workspace:
    """A workspace root, its index database and the engine's operations on them."""

    def __init__(self, root: str | Path, *, index_dir: str | Path | None = None,
                 max_bytes: int = DEFAULT_MAX_BYTES, workers: int | None = None,
                 embedder: str | None = None) -> None:
        pin_mmap_threshold()  # before anything large is allocated: a steadier peak RSS (see allocator.py)
        self.root = Path(root).expanduser().resolve()
        if not self.root.is_dir():
            raise WorkspaceError(f"workspace {self.root} is not a folder: pass an existing folder")
        self.index_dir = Path(index_dir).expanduser().resolve() if index_dir else default_index_dir(self.root)
        self.db_path = self.index_dir / DB_NAME
        self._write_lock = threading.RLock()
        embedder = embedder or os.environ.get(EMBEDDER_ENV) or None
        if embedder is not None:
            try:
                get_embedder(embedder)  # its name and packages, now; the model loads when vectors start
            except (ValueError, ImportError) as exc:
                raise WorkspaceError(f"embedder {embedder!r} ({EMBEDDER_ENV}): {exc}") from None
        try:
            self.conn, self.rebuilt = open_database(self.db_path)
        except OSError as exc:  # a file where the folder should be, no permission, a read-only place
            raise WorkspaceError(f"cannot use {self.index_dir} as the index folder: {exc.strerror or exc}; "
                                 "pass a writable folder (--index-dir)") from None
        self._check_root()
        self.rules = IgnoreRules(self.root, index_dir=self.index_dir)
        self._pass = IndexPass(self.conn, self.root, self.rules, max_bytes=max_bytes, workers=workers)
        self._local = threading.local()
        self._readers: list = []
        self._closed = False
        self._events = EventLog(self.conn, root=self.root)
        self._watcher = None
        self._vector_job = None
        self._embedder_name = embedder
        self.indexing = False  # an index pass is running (answers come from the last snapshot)
        self._cache: TieredCache | None = None
        self._cache_lock = threading.Lock()  # the cache is made once, by the first thread to ask
        self._source_lines = SourceLines()  # split sources by (path, version), shared by requests
        self._frequencies = DocFrequencies()  # document frequencies of query words, shared by requests
        self._edges = EdgeMemory(lambda: sqlite.connect(self.db_path, readonly=True, vectors=False))
        self._postings = PostingMemory(lambda: sqlite.connect(self.db_path, readonly=True, vectors=False))
        self._id = workspace_id(self.root)
        self._predictor = None
        self._prefetcher = None
        self._request_shape: tuple[int | None, str | None] = (None, None)  # (budget, profile) of the last focus request
        self._accuracy: list[tuple[float, float | None]] = []  # (time, online hit@5) for the dashboard
        self._observed = 0
        self._history_head = history.mined_head(self.conn)  # part of cache keys: history changes rankings

    # ------------------------------------------------------------------ #
    # lifecycle
    # ------------------------------------------------------------------ #
    def close(self) -> None:
        """Close every connection this workspace opened."""
        if self._closed:
            return
        self._closed = True
        self.stop_watching()
        if self._prefetcher is not None:
            self._prefetcher.close()
        if self._predictor is not None:
            self.save_predictions()
        if self._vector_job is not None:
            self._vector_job.stop()
        self._edges.close()
        self._postings.close()
        if self._cache is not None:
            self._cache.close()
        for conn in self._readers:
            conn.close()
        self._pass.close()
        self.conn.close()

    def __enter__(self) -> "Workspace":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _check_root(self) -> None:
        """One index per workspace: refuse to reuse another folder's database silently."""
        row = self.conn.execute("SELECT value FROM meta WHERE key='root'").fetchone()
        if row is None:
            self.conn.execute("INSERT INTO meta(key, value) VALUES ('root', ?)", (str(self.root),))
            self.conn.commit()
        elif row[0] != str(self.root):
            raise WorkspaceError(
                f"index {self.db_path} belongs to {row[0]}, not {self.root}: pass another --index-dir")

    def reader(self):
        """This thread's read connection (a consistent snapshot per statement / transaction)."""
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite.connect(self.db_path)
            # Autocommit: each statement sees the latest pass; a request that needs one snapshot
            # across statements opens it with an explicit BEGIN (see ``context``).
            conn.isolation_level = None
            self._local.conn = conn
            self._readers.append(conn)
        return conn

    # ------------------------------------------------------------------ #
    # indexing
    # ------------------------------------------------------------------ #
    def index(self, progress: Progress | None = None, *, paths=None, deleted_dirs=()) -> IndexStats:
        """Bring the index up to date: the whole workspace, or only the given changed paths."""
        waiting = (lambda: progress(WAITING_PHASE, 0, 1)) if progress is not None else None
        with self._write_lock, index_lock(self.index_dir, on_wait=waiting):
            if paths is None:  # a full pass re-reads every ignore file
                self.rules = self._pass.rules = IgnoreRules(self.root, index_dir=self.index_dir)
            self.indexing = True
            try:
                stats = self._pass.run(paths=paths, deleted_dirs=deleted_dirs, progress=progress)
            finally:
                self.indexing = False
        if stats.files_parsed or stats.files_deleted:
            if self._vector_job is not None:
                self._vector_job.poke()
            if self._cache is not None:  # exactly the entries built from what changed
                self._cache.invalidate_paths([*stats.changed_paths, *stats.relinked_paths, INDEX_DEP])
            if self._prefetcher is not None:  # a prefetched file that changed no longer counts as ready
                self._prefetcher.invalidate([*stats.changed_paths, *stats.relinked_paths])
        return stats

    def freshness(self) -> dict:
        """Index generation and time of the last applied change: every answer carries these."""
        meta = dict(self.reader().execute("SELECT key, value FROM meta WHERE key IN ('generation', 'last_change')"))
        last = float(meta.get("last_change", 0) or 0)
        return {
            "generation": int(meta.get("generation", 0)),
            "last_change": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(last)) if last else None,
            "pending_changes": self._watcher.pending() if self._watcher is not None else 0,
            "indexing": self.indexing,
        }

    def status(self) -> dict:
        """Counts, skipped files by reason, and freshness."""
        conn = self.reader()
        skipped = [{"path": p, "reason": r, "detail": d}
                   for p, r, d in conn.execute("SELECT path, reason, detail FROM skipped ORDER BY reason, path")]
        by_reason: dict[str, int] = {}
        for s in skipped:
            by_reason[s["reason"]] = by_reason.get(s["reason"], 0) + 1
        return {
            "workspace": str(self.root),
            "index": str(self.db_path),
            "files": conn.execute("SELECT count(*) FROM files").fetchone()[0],
            "nodes": dict(conn.execute("SELECT kind, count(*) FROM nodes GROUP BY kind ORDER BY kind").fetchall()),
            "edges": dict(conn.execute("SELECT kind, count(*) FROM edges GROUP BY kind ORDER BY kind").fetchall()),
            "skipped_by_reason": by_reason,
            "skipped": skipped,
            "freshness": self.freshness(),
            "vectors": self._vector_job.progress() if self._vector_job is not None else stored_progress(conn),
            "cache": self.cache.stats(),
            "prediction": self._predictor.stats() if self._predictor is not None else None,
            "prefetch": self._prefetcher.stats() if self._prefetcher is not None else None,
            "watching": self._watcher is not None,
            "history": history.summary(conn),
        }

    # ------------------------------------------------------------------ #
    # graph
    # ------------------------------------------------------------------ #
    def nodes(self, target: str | int) -> list[Node]:
        """Every node ``target`` names (path, path:line, dotted or bare name, or a node id)."""
        conn = self.reader()
        if isinstance(target, int):
            node = query.node_by_id(conn, target)
            if node is None:
                raise query.UnknownTarget(f"no node with id {target}")
            return [node]
        return query.find_nodes(conn, self._relative(target))

    def node(self, target: str | int) -> Node:
        """The best node for ``target``: the first of ``nodes`` (definitions before uses, by id)."""
        return self.nodes(target)[0]

    def related(self, target: str | int | Node, *, kinds=None, depth: int = 1, direction: str = "both",
                limit: int = query.MAX_LINKS) -> list[Link]:
        """Two-way links of a node: callers and callees, tests, importers, parents..."""
        node = target if isinstance(target, Node) else self.node(target)
        if node.path:
            self._requested(node.path, None)
        return query.related(self.reader(), node.id, kinds=kinds, depth=depth, direction=direction, limit=limit)

    def _relative(self, target: str) -> str:
        """Accept absolute paths inside the workspace; refuse ones outside it."""
        head, line = _split_line(target)
        path = Path(head)
        if path.is_absolute():
            try:
                head = path.resolve().relative_to(self.root).as_posix()
            except ValueError:
                raise query.UnknownTarget(f"{head} is outside the workspace {self.root}") from None
        return head if line is None else f"{head}:{line}"

    # ------------------------------------------------------------------ #
    # search and context
    # ------------------------------------------------------------------ #
    def enable_vectors(self, wait: bool = False) -> bool:
        """Start embedding nodes in the background (default embedder if installed); True if enabled."""
        if self._vector_job is None:
            embedder = get_embedder(self._embedder_name)
            if embedder is None:
                return False
            from indexer.search.vector_job import VectorJob

            self._vector_job = VectorJob(lambda: sqlite.connect(self.db_path), self.conn, self._write_lock, embedder)
            self._vector_job.poke()
        if wait:
            self._vector_job.wait()
        return True

    def _dense(self):
        """Dense search over the vectors that have landed so far, or None."""
        job = self._vector_job
        if job is None or job.done == 0:
            return None
        from indexer.search.vectors import VectorIndex

        index = VectorIndex(self.reader(), job.embedder.dim)
        return lambda text, k: index.knn(job.embedder.embed([text])[0], k)

    def search(self, query_text: str, *, top_k: int = 10, kind: str | None = None,
               options: hybrid.SearchOptions = hybrid.SearchOptions()) -> list[SearchHit]:
        """Ranked code locations for a query: BM25 + vectors, re-ranked with code-aware signals."""
        conn = self.reader()
        key = make_key(self._id, "search", {"query": query_text, "top_k": top_k, "kind": kind,
                                            "options": repr(options), "dense": self._dense_state(),
                                            "history": self._history_head})
        cached = self.cache.get("results", key, count=not self._unobserved())
        if cached is not MISSING:
            return [hybrid.hit_from_json(h) for h in cached]
        conn.execute("BEGIN")  # one snapshot: the generation recorded is the one searched
        try:
            hits = hybrid.search(conn, query_text, top_k=top_k, kind=kind, dense=self._dense(), options=options,
                                 count_tokens=tokens.count, code_of=SourceCache(conn, self._source_lines).code,
                                 frequencies=self._frequencies, edges=self._edges.source(conn),
                                 postings=self._postings.source(conn))
            deps = index_versions(conn, [INDEX_DEP])
        finally:
            conn.rollback()
        self.cache.put("results", key, [h.to_json() | {"id": h.node.id, "signature": h.node.signature,
                                                       "doc": h.node.doc} for h in hits], deps)
        return hits

    def ranked(self, query_text: str, options: hybrid.SearchOptions = hybrid.SearchOptions()):
        """Every candidate node id for a query, best first: (id, score, why)."""
        conn = self.reader()
        return hybrid.ranked_ids(conn, query_text, dense=self._dense(), options=options,
                                 frequencies=self._frequencies, edges=self._edges.source(conn),
                                 postings=self._postings.source(conn))

    def context(self, query_text: str | None = None, *, focus: str | None = None, task_id: str | None = None,
                budget: int | None = None, profile: str | None = None,
                options: hybrid.SearchOptions = hybrid.SearchOptions()) -> PackedContext:
        """The packed context for a query / focus / task, never over the budget."""
        key, limit, counter = self._context_key(query_text, focus, task_id, budget, profile, options)
        if focus:
            if not self._unobserved():  # prefetch the next files at the same budget
                self._request_shape = (budget, profile)
            self._requested(focus, task_id, reads=key)
        cached = self.cache.get("context", key, count=not self._unobserved())
        if cached is not MISSING:
            return PackedContext.from_json(cached)
        conn = self.reader()
        conn.execute("BEGIN")  # one snapshot for the whole request
        try:
            focus_nodes = self.nodes(focus) if focus else []
            task = self.task_state(task_id) if task_id else None
            text = " ".join(x for x in (query_text, getattr(task, "query", None), getattr(task, "title", None),
                                        getattr(task, "description", None)) if x)
            edges = self._edges.source(conn)
            ranked = hybrid.ranked_ids(conn, text, dense=self._dense(), options=options,
                                      frequencies=self._frequencies, edges=edges,
                                      postings=self._postings.source(conn))[:BREADTH_HITS] \
                if text.strip() else []
            assembler = Assembler(conn, SourceCache(conn, self._source_lines), edges)
            cands = assembler.candidates(Request(query_text, focus_nodes[:1], task, ranked, limit,
                                                 focus_line=_split_line(focus)[1] if focus else None))
            packed = pack(cands, limit, counter)
            # Built from every candidate's file (kept or dropped), read in this same snapshot; and a query's
            # ranking reads the whole index: code any other file gains (a new file, say) may rank for it.
            deps = index_versions(conn, {c.path for c in cands if c.path} | ({INDEX_DEP} if text.strip() else set()))
            if task is not None:
                deps[task_dep(task_id)] = task.seq
        finally:
            conn.rollback()
        self.cache.put("context", key, packed.to_json(), deps)
        return packed

    # ------------------------------------------------------------------ #
    # task events
    # ------------------------------------------------------------------ #
    def _context_key(self, query_text: str | None, focus: str | None, task_id: str | None, budget: int | None,
                     profile: str | None, options: hybrid.SearchOptions = hybrid.SearchOptions()):
        """A context request's cache key, with the token limit and counter its profile and budget give."""
        prof = tokens.profile(profile or tokens.DEFAULT_PROFILE)
        limit = tokens.context_budget(prof, budget)
        counter = tokens.tokenizer_for(prof)
        key = make_key(self._id, "context", {"query": query_text, "focus": focus, "task": task_id, "budget": limit,
                                             "tokenizer": counter.name, "options": repr(options),
                                             "dense": self._dense_state(), "history": self._history_head})
        return key, limit, counter

    def _summary_key(self, rel: str) -> str:
        return make_key(self._id, "module_summary", {"path": rel})

    def record(self, task_id: str, type: str, data: dict | None = None) -> Event:
        """Append an event to a task's log (never updates anything in place)."""
        with self._write_lock:
            event = self._events.append(task_id, type, data)
        if self._cache is not None:
            self._cache.invalidate_paths([task_dep(task_id)])
        if self._prefetcher is not None:  # what was prefetched for this task was built from its older state
            self._prefetcher.forget_task(task_id)
        path = event.data.get("path")
        if type in _FILE_EVENTS and path:
            # The log made a path inside the workspace relative; one outside it is the agent's to record, and
            # no move of this workspace (refusing it after the append left the event stored all the same).
            if not (path.startswith(("/", "../")) or path == ".."):
                # A file that is not there (a typo, a Windows path) would teach the predictor a move to nowhere.
                seen = path if (self.root / path).is_file() else path.replace("\\", "/")
                if (self.root / seen).is_file():
                    self.observe(seen, task_id=task_id, kind="edited" if type == "file_edited" else "opened")
            return event
        if type == "task_started":  # the model's retrieval signal reads the task's text
            self.predictor.set_query(task_id, event.data.get("query") or event.data.get("title"))
        if type == "test_result":
            test_file = self._test_file(event.data["test"])
            if test_file is not None:  # a candidate next file for the task, not a visit
                self.predictor.observe_test_run(test_file, task_id=task_id)
        if self._prefetcher is not None:  # rebuild the likely next files from the task's new state
            self._prefetcher.after_event(self.predictor, task_id=task_id, top_k=self._prefetch_top_k)
        return event

    def _test_file(self, test: str) -> str | None:
        """The indexed file a test id names (``tests/test_x.py::TestY::test_z`` or a path), else None."""
        head = test.split("::", 1)[0].strip()
        if not head:
            return None
        try:
            rel = self._relative(head)
        except query.UnknownTarget:
            return None
        found = self.reader().execute("SELECT 1 FROM files WHERE path=?", (rel,)).fetchone()
        return rel if found else None

    def task_state(self, task_id: str, at: int | None = None) -> TaskState:
        """A task's state replayed from its events (up to sequence ``at``)."""
        return EventLog(self.reader(), root=self.root).state(task_id, at=at)

    def tasks(self) -> list[str]:
        return EventLog(self.reader(), root=self.root).tasks()

    def unstarted_task_note(self, task_id: str, type: str) -> str | None:
        """What to tell a caller about to record ``type`` for a task no event names yet (a typo in its id, or a
        task begun without ``task_started``): it is recorded all the same, as the start of a new task."""
        if type == "task_started" or EventLog(self.reader(), root=self.root).has_task(task_id):
            return None
        return (f"task {task_id!r} had no events: this one starts it; record task_started with a title first "
                "so contexts say what the task is about")

    # ------------------------------------------------------------------ #
    # summaries
    # ------------------------------------------------------------------ #
    def overview(self, budget: int = 1500) -> str:
        """A structural project overview (purpose, architecture, key modules, entry points)."""
        return build_overview(self.root, self.reader(), budget)

    def module_summary(self, path: str) -> str:
        """A module's classes and functions with signatures, imports, importers and tests."""
        rel = self._relative(path)
        key = self._summary_key(rel)
        self._requested(rel, None, any_task=True, reads=key)  # a summary does not depend on the task it was built for
        cached = self.cache.get("module", key, count=not self._unobserved())
        if cached is not MISSING:
            return cached
        conn = self.reader()
        conn.execute("BEGIN")
        try:
            text = module_summary(conn, rel)
            # The summary lists importers and tests: it is built from their files too.
            linked = [r[0] for r in conn.execute(
                "SELECT DISTINCT f2.path FROM files f JOIN nodes n ON n.file_id=f.id JOIN edges e "
                "ON e.dst=n.id JOIN nodes n2 ON n2.id=e.src JOIN files f2 ON f2.id=n2.file_id "
                "WHERE f.path=? AND e.kind IN ('imports', 'tests')", (rel,))]
            deps = index_versions(conn, [rel, *linked])
        finally:
            conn.rollback()
        if not text:
            hint = ""
            if "/" not in rel and not rel.endswith(".py"):  # a dotted module name: say which path it is
                row = self.reader().execute("SELECT f.path FROM nodes n JOIN files f ON f.id = n.file_id "
                                            "WHERE n.kind = 'module' AND n.qualname = ?", (rel,)).fetchone()
                hint = f": pass its path, {row[0]}" if row else ": pass a workspace-relative file path"
            raise query.UnknownTarget(f"{path} is not an indexed module of {self.root}{hint}")
        self.cache.put("module", key, text, deps)
        return text

    # ------------------------------------------------------------------ #
    # cache
    # ------------------------------------------------------------------ #
    @property
    def cache(self) -> TieredCache:
        """The tiered answer cache (SQLite beside the index: survives restarts)."""
        if self._cache is None:
            with self._cache_lock:  # a request, the warm-up and the prefetcher may ask at once
                if self._cache is None:  # a second backend would race the first to switch the file to WAL
                    self._cache = TieredCache(SqliteBackend(self.index_dir / "cache.db"), versions=self._versions)
        return self._cache

    def _versions(self, deps) -> dict:
        """Current versions of cache dependencies: files, the index generation, task event sequences."""
        deps = list(deps)
        conn = self.reader()
        current = dict(index_versions(conn, [d for d in deps if not d.startswith(task_dep(""))]))
        for dep in deps:
            if dep.startswith(task_dep("")):
                row = conn.execute("SELECT max(seq) FROM events WHERE task_id=?", (dep[len(task_dep("")):],)).fetchone()
                current[dep] = row[0] if row and row[0] is not None else 0
        return current

    def mine_history(self, repo: str | Path | None = None, head: str = "HEAD",
                     subdir: str | None = None) -> int | None:
        """Store the git history up to ``head`` of ``repo`` (default: the workspace) for the ``history``
        ranking signal; returns the commits stored, 0 when that head is already stored, None outside git.

        ``repo`` may be a bare repository, ``head`` any commit and ``subdir`` the workspace's folder in it,
        so a benchmark can give an exported folder the history of the commit it holds.
        """
        repo = Path(repo) if repo is not None else self.root
        sha = git.resolve(repo, head)
        if sha is None:
            return None
        if sha == self._history_head:
            return 0
        commits = history.read_commits(repo, sha, subdir=subdir)
        with self._write_lock:
            history.store(self.conn, sha, commits)
            self.conn.commit()
            self._history_head = sha
        return len(commits)

    def mine_git(self) -> None:
        """Follow the workspace's git HEAD: its commit messages for the ranking (``mine_history``) and, once
        the predictor is loaded, its co-change. Each costs a ``rev-parse`` when HEAD has not moved; outside
        git, nothing. The watcher calls it when HEAD or a branch ref is written (a commit, checkout, pull)."""
        self.mine_history()
        if self._predictor is not None:
            self._predictor.mine_git(self.root)

    def _dense_state(self) -> str:
        """Part of cache keys: answers with and without vectors differ."""
        job = self._vector_job
        return "none" if job is None or job.done == 0 else f"{job.embedder.name}:{job.done >= job.total}"

    # ------------------------------------------------------------------ #
    # live index
    # ------------------------------------------------------------------ #
    def warm(self, *, wait: bool = False) -> None:
        """Load the in-memory structures (BM25 postings, graph edges, the writer's symbol table, the token
        counter) now, in the background.

        Requests never wait for the first three (they read SQLite meanwhile); a server calls this once
        the index is ready so that the first questions are already fast. ``wait`` blocks until loaded.
        """
        self._postings.start()
        self._edges.start()
        loader = self._load_symbols_in_background()
        # Every search and context counts tokens: loading cl100k's ranks (~0.5 s) in the first one made a
        # server's first answer, and the first save's visibility, that much later than the next ones.
        counter = threading.Thread(target=tokens.count, args=("",), name="codeahead-tokenizer", daemon=True)
        counter.start()
        if wait:
            self._postings.wait()
            self._edges.wait()
            if loader is not None:
                loader.join()
            counter.join()

    def _load_symbols_in_background(self) -> threading.Thread | None:
        """Load the writer's symbol table from a snapshot, so the first save after a start need not.

        The first pass of a process loads it (~0.45 s on Django), which made the first save after a
        server start visible ~0.5 s later than the next ones. Loaded on a read connection, the writer's
        lock is taken only to hand it over; a pass that ran meanwhile keeps its own.
        """
        if self._pass.has_symbols:
            return None

        def load() -> None:
            # After the postings and edges: loaded beside their transient peak, the table added ~40 MB
            # to the process's peak RSS on Django; loaded after, it fits in what they freed.
            self._postings.wait()
            self._edges.wait()
            try:
                conn = sqlite.connect(self.db_path, readonly=True, vectors=False)
                try:
                    symbols, generation = snapshot_symbols(conn)
                finally:
                    conn.close()
                with self._write_lock:
                    if not self._closed:
                        self._pass.adopt_symbols(symbols, generation)
            except sqlite.DatabaseError as exc:  # e.g. the index was removed meanwhile: a pass loads its own
                log.debug("symbol table not preloaded: %s", exc)

        thread = threading.Thread(target=load, name="codeahead-symbols", daemon=True)
        thread.start()
        return thread

    def start_watching(self, on_applied=None, *, on_history=None, debounce: float = 0.05,
                       max_delay: float = 1.0) -> None:
        """Watch the workspace and apply changes as they settle (one pass per batch).

        ``on_applied(batch, result)`` follows each index pass; ``on_history(summary)`` each time the watcher
        mined a new git HEAD (``summary`` as ``status()["history"]``).
        """
        from indexer.watch import WatchEnded, Watcher

        if self._watcher is not None:
            return

        def apply(batch) -> None:
            if not self.root.is_dir():  # every change would read as a delete
                raise WatchEnded(f"the workspace {self.root} is gone (moved or deleted): start again where it is")
            if not self.index_dir.is_dir():
                raise WatchEnded(f"the index folder {self.index_dir} was deleted: start again to rebuild it")
            if len(batch):
                if batch.ignore_files_changed or batch.rescan:
                    result = self.index()  # rules changed, or events were lost: a full pass re-reads all
                else:
                    result = self.index(paths=sorted(batch.changed | batch.deleted),
                                        deleted_dirs=sorted(batch.deleted_dirs))
                if self._predictor is not None and len(batch.changed) <= _EDITS_AS_NAVIGATION:
                    for path in sorted(batch.changed):  # a save is a step of the developer; a burst is not
                        self.observe(path, kind="edited")
                if on_applied is not None:
                    on_applied(batch, result)
            if batch.refs_changed:  # after the files: mining a new head (~0.7 s on Django) must not delay them
                head = self._history_head
                self.mine_git()
                if on_history is not None and self._history_head != head:
                    on_history(history.summary(self.reader()))

        git_dir, common = git.git_dirs(self.root) or (None, None)
        watcher = Watcher(self.root, apply, is_ignored=self._is_ignored, debounce=debounce,
                          max_delay=max_delay, self_paths=[self.index_dir], git_dir=git_dir,
                          git_common_dir=common)
        # Published once its observer watches (start() returns after the inotify watches are added): a
        # caller that sees ``watcher`` set may write a file and expect it to be seen.
        self._watcher = watcher.start()

    def _is_ignored(self, path: str, is_dir: bool) -> bool:
        # Late-bound: a full pass (after an ignore file changed) replaces ``self.rules``.
        return self.rules.is_ignored(path, is_dir)

    def stop_watching(self) -> None:
        if self._watcher is not None:
            self._watcher.stop(flush=False)
            self._watcher = None

    @property
    def watcher(self):
        return self._watcher

    # ------------------------------------------------------------------ #
    # prediction and prefetch
    # ------------------------------------------------------------------ #
    @property
    def predictor(self):
        """The next-file model of this workspace (persisted in the index database)."""
        if self._predictor is None:
            from indexer.predict import Predictor, PredictStore, SqliteGraphView

            with self._write_lock:
                if self._predictor is None:  # two threads asking at once: two models would learn half the moves each
                    store = PredictStore(self.conn)
                    self._predictor = Predictor(SqliteGraphView(self.reader, ranked=self.ranked), store)
        return self._predictor

    def enable_prefetch(self, top_k: int = PREFETCH_TOP_K) -> None:
        """After each observed move, build the likely next files' summaries and contexts into the cache."""
        from indexer.predict import Prefetcher

        if self._prefetcher is None:
            self._prefetch_top_k = top_k
            self._prefetcher = Prefetcher(self._prefetch_one)

    def _prefetch_one(self, path: str, task_id: str | None) -> frozenset[str]:
        """Build what a request for ``path`` within ``task_id`` reads, under the keys that request will use;
        returns those keys (a later request reading another key, another budget say, is no prefetch hit)."""
        budget, profile = self._request_shape
        with self.unobserved():
            self.module_summary(path)
            self.context(focus=path, task_id=task_id, budget=budget, profile=profile)
        return frozenset({self._summary_key(path), self._context_key(None, path, task_id, budget, profile)[0]})

    def observe(self, path: str, *, task_id: str | None = None, kind: str = "opened") -> None:
        """Learn one move of the agent or developer; then prefetch what it predicts next."""
        rel = self._relative(path)
        predictor = self.predictor
        predictor.observe(rel, task_id=task_id, kind=kind)
        self._observed += 1
        if self._observed % _SAVE_EVERY == 0:
            self.save_predictions()
        stats = predictor.stats()
        self._accuracy.append((time.time(), stats["hit_at_5"]))
        del self._accuracy[:-1440]
        if self._prefetcher is not None:
            self._prefetcher.after_event(predictor, task_id=task_id, top_k=self._prefetch_top_k)

    def _requested(self, target: str, task_id: str | None, *, any_task: bool = False, reads: str | None = None) -> None:
        """A request named a file: count a prefetch hit or miss, and learn the move."""
        if (self._predictor is None and self._prefetcher is None) or self._unobserved():
            return
        path = self._path_of(target)
        if path is None:
            return
        if self._prefetcher is not None:
            self._prefetcher.record_request(path, task_id, any_task=any_task, reads=reads)
        self.observe(path, task_id=task_id, kind="requested")

    def _unobserved(self) -> bool:
        return getattr(self._local, "unobserved", False)

    @contextmanager
    def unobserved(self) -> Iterator[None]:
        """Requests made inside (on this thread) are the program's own, a warm-up or a prefetch: they teach the
        predictor no move and count no prefetch hit or miss."""
        before = self._unobserved()
        self._local.unobserved = True
        try:
            yield
        finally:
            self._local.unobserved = before

    def _path_of(self, target: str) -> str | None:
        try:
            return self.node(target).path
        except query.UnknownTarget:
            return None

    def predict(self, current: str | None = None, *, task_id: str | None = None, top_k: int = 10,
                query_text: str | None = None):
        """The files likely needed next, each with a score and its reasons."""
        if top_k < 1:
            raise ValueError(f"top_k must be >= 1, not {top_k}")
        rel = None
        if current:
            rel = _split_line(self._relative(current))[0]  # path:line names its file
            if self.reader().execute("SELECT 1 FROM files WHERE path=?", (rel,)).fetchone() is None:
                raise query.UnknownTarget(f"{current} is not an indexed file: pass a workspace-relative path "
                                          "as search shows it")
        if task_id is not None:
            state = self.task_state(task_id)  # unknown task: a clear error
            if query_text is None:  # the log has the task's text even when the model lost it (a reset, say)
                query_text = state.query or state.title or None
        return self.predictor.predict(rel, task_id=task_id, top_k=top_k, query=query_text)

    def save_predictions(self) -> None:
        with self._write_lock:
            self.predictor.save()

    def reset_predictions(self) -> None:
        """Forget what the model learned (memory and database)."""
        with self._write_lock:
            self.predictor.reset()

    def prediction_history(self) -> list[tuple[float, float | None]]:
        """(time, online hit@5) after each observed move, for the dashboard."""
        return list(self._accuracy)
