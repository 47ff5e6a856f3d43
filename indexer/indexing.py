"""One index pass: walk -> diff against the store -> parse changed files in parallel -> write -> resolve.

Only files whose content hash changed are parsed. Resolution then runs for the
changed files and for exactly the files whose recorded name dependencies meet
a changed name, so an incremental pass leaves the same graph a full one would.
Everything a pass writes goes in one transaction: a reader sees the graph
before the pass or after it, never half of it.

The writer (this process) works while the others compute: an index that starts empty stores
each file as the pool hands it over, and once the symbol table is complete, a pass with many
files has forked children resolve them while the writer stores their edges.
"""

from __future__ import annotations

import gc
import json
import logging
import os
import threading
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from operator import itemgetter
from pathlib import Path

import msgpack

from indexer import sqlite
from indexer.graph.changes import ChangeTracker, FileShape, lookup_names
from indexer.graph.facts import FileFacts
from indexer.graph.parallel import Links, can_fork, links_forked, links_here
from indexer.graph.resolve import LIBRARY, NodeInfo, Resolution, Resolver, Symbols, ordered_bases
from indexer.loading import Job, Loaded, Parsed, Progress, load_stream, start_pool_server
from indexer.modules import module_names
from indexer.parse import RecentTrees, language_of
from indexer.store import fts_totals
from indexer.store.schema import generation
from indexer.testpaths import is_test_path
from indexer.types import IndexStats, Skipped, SkipReason, SourceFile
from indexer.walk import DEFAULT_MAX_BYTES, IgnoreRules, bad_name, is_utf8_name, linked_file, shown_name, walk

_SQL_CHUNK = 500  # host parameters per IN (...) list
#: Files written per batch: bounds the rows held in memory, and what is left to write once the last
#: file arrives from the pool or the resolver (the writer works while they do).
_WRITE_BATCH = 64
#: From this many files to resolve, forked children resolve the links while the writer stores them.
_PARALLEL_RESOLVE_MIN = 256
_FILE_ROW = "path, id, hash, size, mtime, module"  # a stored file as a pass plans with it
#: From this many parsed files, the FTS segments are merged after the commit (``_Checkpoints``).
MERGE_FTS_FILES = 200
_MERGE_PAGES = 250  # pages of FTS merging per transaction (negative in the command: merge all levels)

log = logging.getLogger(__name__)


@contextmanager
def collector_paused() -> Iterator[None]:
    """Run without Python's cyclic garbage collector, then restore it.

    A pass allocates millions of small objects that form no cycles (rows, facts, the symbol
    table), and reference counting frees them. Each allocation burst made the collector walk the
    whole heap again: 1.25 of the writer's 5.75 CPU-s on a cold index of Django went to it.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


# --------------------------------------------------------------------------- #
# The pass
# --------------------------------------------------------------------------- #

#: The rules that turn an unchanged file into nodes and links (parsing, module names, test code, resolution).
#: Raise it with any change to them: a full pass over an index built under other rules then re-parses every
#: file once, instead of leaving the unchanged files' nodes and links as the earlier rules made them.
GRAPH_RULES = 3
_GRAPH_RULES_KEY = "graph_rules"


@dataclass(slots=True)
class _Plan:
    """What a pass must do, decided from the walk and the files table."""

    to_load: list[Job] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    stat_only: dict[str, SourceFile] = field(default_factory=dict)
    seen: int = 0
    #: A partial pass's paths, and its deleted folders as ``folder/``: their skip rows are rewritten, so a
    #: skipped file deleted since (too large, not UTF-8) leaves the list.
    touched: set[str] = field(default_factory=set)


@dataclass(slots=True)
class _Intake:
    """Sorts the loaded stream as it passes: parsed files go on to the writer, the rest is kept for later steps."""

    paths: set[str] = field(default_factory=set)  # every path loaded
    parsed_paths: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)  # the stat changed, the content hash did not
    bad: list[Skipped] = field(default_factory=list)
    recovered: list[str] = field(default_factory=list)  # parsed, with syntax errors

    def sort(self, loaded: Iterable[Loaded]) -> Iterator[Loaded]:
        """The parsed files of ``loaded``, noting every other answer on the way."""
        for item in loaded:
            self.paths.add(item.path)
            if item.parsed is not None:
                self.parsed_paths.append(item.path)
                if item.parsed.has_errors:
                    self.recovered.append(item.path)
                yield item
            elif item.unchanged:
                self.unchanged.append(item.path)
            elif item.skipped is not None:
                self.bad.append(item.skipped)


def _drain(items: list) -> Iterator:
    """The items of a list in order, each dropped from the list as it is handed out (peak memory)."""
    items.reverse()
    while items:
        yield items.pop()


class IndexPass:
    """Brings the store up to date with the disk; owns the in-memory symbol table between passes."""

    def __init__(self, conn, root: Path, rules: IgnoreRules, *, max_bytes: int = DEFAULT_MAX_BYTES,
                 workers: int | None = None) -> None:
        self.conn = conn
        self.root = root
        self.rules = rules
        self.max_bytes = max_bytes
        self.workers = workers or os.cpu_count() or 1
        self._symbols: Symbols | None = None
        self._trees = RecentTrees()  # the files this process parsed last: the next save re-parses incrementally
        self._new_edges: Counter | None = None  # edges written by a pass into an empty index, by kind
        self._checkpoints = _Checkpoints()

    # -- public -------------------------------------------------------------- #
    def close(self) -> None:
        """Let a background checkpoint finish (the workspace closes its connections next)."""
        self._checkpoints.wait()

    def run(self, *, paths: Iterable[str] | None = None, deleted_dirs: Iterable[str] = (),
            progress: Progress | None = None) -> IndexStats:
        """Index the whole workspace, or only ``paths`` (and folders in ``deleted_dirs``) when given."""
        started = time.perf_counter()
        deleted_dirs = list(deleted_dirs)
        fts_totals.settle(self.conn)  # what a pass that crashed after its commit left to subtract
        view = self._partial_view(paths, deleted_dirs) if paths is not None else None
        if view is None:
            known = {row[0]: row for row in self.conn.execute(f"SELECT {_FILE_ROW} FROM files")}
            if not known:  # an empty index: every file will be parsed, by the pool
                start_pool_server(self.workers)
            if paths is None:
                result = walk(self.root, max_bytes=self.max_bytes, rules=self.rules)
                current = {f.path: f for f in result.files}
                skipped = result.skipped
            else:
                current, skipped = self._stat_paths(paths, deleted_dirs, known)
            # A partial pass gets here only when a package appears or goes.
            modules = module_names(current, self.root.name)
            seen, had_files = len(current), bool(known)
        else:
            known, current, skipped, modules, seen, had_files = view
        touched = None if paths is None else set(paths)
        new_rules = paths is None and self._graph_rules() != GRAPH_RULES
        if new_rules and had_files:
            log.warning("this index was built by another release of codeahead: re-parsing every file once")
        plan = self._plan(current, known, modules, touched, reparse=new_rules and had_files)
        plan.seen = seen
        plan.touched = {shown_name(p) for p in touched or ()} | {shown_name(d).rstrip("/") + "/" for d in deleted_dirs}
        if progress:
            progress("walk", plan.seen, plan.seen)
        loaded = load_stream(str(self.root), plan.to_load, self.max_bytes, self.workers, progress, self._trees)
        try:
            with collector_paused():
                stats = self._write(loaded, plan, current, modules, known, skipped, full=paths is None,
                                    had_files=had_files, progress=progress, new_rules=new_rules)
        except BaseException:
            self.conn.rollback()
            self._symbols = None  # may hold half of the failed pass
            raise
        finally:
            loaded.close()  # stops the pool if the write failed
        return IndexStats(seconds=time.perf_counter() - started, **stats)

    # -- planning ------------------------------------------------------------- #
    def _partial_view(self, paths: Iterable[str], deleted_dirs: Iterable[str]):
        """What a watcher batch can change, read for its paths only: (known, current, skipped, modules,
        files seen, had files); None when it adds or removes a package (module names elsewhere change).

        ``known`` and ``current`` hold only the batch's paths and the stored files under its deleted
        folders: every other stored file keeps its row, stat and module, so it is neither loaded
        nor deleted. Reading all ~3,000 rows of a large workspace per save cost ~7 ms.
        """
        conn = self.conn
        paths = list(dict.fromkeys(paths))
        deleted_dirs = [d for d in deleted_dirs if is_utf8_name(d)]  # nothing was stored under such a name
        known: dict[str, tuple] = {}
        for chunk in _chunks([p for p in paths if is_utf8_name(p)]):  # another name was never stored
            known.update((row[0], row) for row in conn.execute(
                f"SELECT {_FILE_ROW} FROM files WHERE path IN ({','.join('?' * len(chunk))})", chunk))
        for folder in deleted_dirs:
            prefix = folder.rstrip("/") + "/"
            # Paths starting with ``prefix`` sort between it and the prefix with "/" raised to "0".
            known.update((row[0], row) for row in conn.execute(
                f"SELECT {_FILE_ROW} FROM files WHERE path >= ? AND path < ?", (prefix, prefix[:-1] + "0")))
        current, skipped = self._stat_paths(paths, deleted_dirs, known)
        if any(_is_init(p) and (p in known) != (p in current) for p in paths):
            return None
        modules = {p: known[p][5] for p in current if p in known}
        missing = [p for p in current if p not in known]
        if missing:  # new files: their names follow the packages of the whole file set
            stored = (row[0] for row in conn.execute("SELECT path FROM files WHERE path LIKE '%init%'"))  # coarse
            inits = {p for p in stored if _is_init(p) and (p not in known or p in current)}
            modules.update({p: m for p, m in module_names([*missing, *inits], self.root.name).items()
                            if p in missing})
        total = conn.execute("SELECT count(*) FROM files").fetchone()[0]
        return known, current, skipped, modules, total - len(known) + len(current), total > 0

    def _stat_paths(self, paths, deleted_dirs, known) -> tuple[dict[str, SourceFile], list[Skipped]]:
        """The file set after a watcher batch: known files, plus/minus the given paths."""
        current: dict[str, SourceFile] = {
            p: SourceFile(p, row[3], row[4], "python") for p, row in known.items()}
        for folder in deleted_dirs:
            prefix = folder.rstrip("/") + "/"
            for p in [p for p in current if p.startswith(prefix)]:
                del current[p]
        skipped: list[Skipped] = []
        for path in paths:
            current.pop(path, None)
            if language_of(path) is None:
                continue
            if not is_utf8_name(path):
                if os.path.lexists(self.root / path):
                    skipped.append(bad_name(path))
                continue
            if self.rules.is_ignored(path, False):
                continue
            full = self.root / path
            if full.is_symlink():
                skipped.append(linked_file(os.path.realpath(self.root), str(full), path))
                continue
            try:
                st = full.stat()
            except FileNotFoundError:
                continue
            except OSError as exc:
                skipped.append(Skipped(path, SkipReason.UNREADABLE, str(exc)))
                continue
            if not full.is_file():
                continue
            if st.st_size > self.max_bytes:
                skipped.append(Skipped(path, SkipReason.TOO_LARGE, f"{st.st_size} bytes > {self.max_bytes}"))
                continue
            current[path] = SourceFile(path, st.st_size, st.st_mtime, "python")
        return current, skipped

    def _graph_rules(self) -> int:
        row = self.conn.execute("SELECT value FROM meta WHERE key=?", (_GRAPH_RULES_KEY,)).fetchone()
        return int(row[0]) if row else 1  # indexes from before the key was kept: the first rules

    def _plan(self, current, known, modules, touched: set[str] | None, *, reparse: bool = False) -> _Plan:
        plan = _Plan(seen=len(current))
        for path, f in current.items():
            row = known.get(path)
            module = modules[path]
            if row is None or row[5] != module or reparse:
                plan.to_load.append((path, None, module))  # new, its package changed, or the graph rules did
            elif row[3] != f.size or row[4] != f.mtime or (touched is not None and path in touched):
                plan.to_load.append((path, row[2], module))  # stat differs or the watcher saw it: check the hash
        plan.deleted = [p for p in known if p not in current]
        return plan

    # -- writing -------------------------------------------------------------- #
    def _write(self, loaded: Iterator[Loaded], plan, current, modules, known, skipped, *, full, had_files,
               progress, new_rules: bool = False) -> dict:
        conn = self.conn
        now = time.time()
        # An index with files compares the old nodes with the new ones before it removes anything, so
        # it waits for the whole parse; an empty one has nothing to compare and writes files as they arrive.
        early = list(loaded) if had_files else []
        parsed = [l for l in early if l.parsed is not None]
        bad_known = [l.skipped.path for l in early if l.skipped is not None and l.skipped.path in known]
        # Loading the symbol table costs ~0.5 s on a large index: a pass with nothing to parse or
        # delete (a reopen) needs none, and works on an empty one.
        touches_graph = not had_files or bool(parsed or plan.deleted or bad_known)
        # A pass into an empty index counts the edges it writes, so it need not count the table after:
        # every edge is new and written once (a file's edges start at its own nodes).
        self._new_edges = None if had_files else Counter()
        symbols = self._symbols_table() if touches_graph else Symbols()
        gone = list(plan.deleted) + bad_known
        replaced = {l.path for l in parsed if l.path in known}

        conn.execute("BEGIN IMMEDIATE")
        # 1. The old versions: their shapes, for the change keys, and their node ids, for reuse.
        stale_ids = [known[p][1] for p in (*gone, *sorted(replaced))]
        old_facts = self._stored_facts(stale_ids)
        tracker = ChangeTracker(symbols)
        if had_files:
            tracker.before([self._shape(f) for f in old_facts],
                           lookup_names(self._node_keys(old_facts), _parsed_node_keys(parsed, modules)))
        del parsed  # released one by one as they are written (peak memory)
        prior_bases = {cid: list(symbols.bases.get(cid, ())) for f in old_facts for cid in f.def_ids}
        reuse = {f.file_id: self._reusable_ids(f) for f in old_facts if f.path in replaced}
        old_ids = {f.file_id: [f.module_node, *f.def_ids] for f in old_facts}
        # New nodes take ids above every id in use before this pass: an id of a removed node must not
        # come back while edges from other files may still name it.
        id_floor = conn.execute("SELECT max(id) FROM nodes").fetchone()[0] or 0
        self._remove_old(old_facts, symbols, keep_rows={known[p][1] for p in replaced})
        for path in gone:
            del known[path]

        # 2. New rows for parsed files, reusing the ids of definitions that kept their name and kind.
        intake = _Intake()
        new_facts = self._insert_parsed(intake.sort(_drain(early) if had_files else loaded), current, modules,
                                        known, symbols, now, reuse, id_floor)
        kept = {i for f in new_facts for i in (f.module_node, *f.def_ids)}
        lost = [i for ids in old_ids.values() for i in ids if i not in kept]
        # Whatever linked to a node that is gone must be resolved again, whether or not one of its lookups
        # changed its answer: a module moved to a path with the same module name keeps every qualified
        # name and answer, but its nodes have new ids.
        linked = self._files_linking_to(lost)
        self._delete_in("DELETE FROM edges WHERE dst IN ({})", lost)
        self._delete_in("DELETE FROM edges WHERE src IN ({})", lost)  # kept files' definitions that went
        if any(f.module not in symbols.modules for f in old_facts):  # else no top-level package can have gone
            symbols.rebuild_top_packages()
        # An index that started empty has no dependents to find: every file is resolved anyway.
        changed_keys = tracker.after([self._shape(f) for f in new_facts]) if had_files else set()

        # 3. Stat-only updates for files whose content did not change.
        conn.executemany("UPDATE files SET size=?, mtime=? WHERE path=?",
                         [(current[p].size, current[p].mtime, p) for p in intake.unchanged])
        bad, recovered, seen_paths = intake.bad, intake.recovered, intake.paths

        # 4. Skips: a full pass replaces the list; a partial one updates the paths it saw.
        if full:  # a file parsed with syntax errors in an earlier pass and not re-read since still has them
            kept = set(current) - set(intake.parsed_paths) - {s.path for s in bad}
            conn.execute("DELETE FROM skipped WHERE reason != ?", (SkipReason.SYNTAX_ERROR.value,))
            self._delete_in("DELETE FROM skipped WHERE path IN ({})", [
                p for (p,) in conn.execute("SELECT path FROM skipped") if p not in kept])
        else:
            seen_paths |= {s.path for s in (*skipped, *bad)} | {p for p in plan.touched if not p.endswith("/")}
            self._delete_in("DELETE FROM skipped WHERE path IN ({})", sorted(seen_paths))
            for prefix in (p for p in plan.touched if p.endswith("/")):
                conn.execute("DELETE FROM skipped WHERE path >= ? AND path < ?", (prefix, prefix[:-1] + "0"))
        conn.executemany("INSERT OR REPLACE INTO skipped(path, reason, detail) VALUES (?, ?, ?)",
                         [(s.path, s.reason.value, s.detail) for s in (*skipped, *bad)])
        conn.executemany("INSERT OR REPLACE INTO skipped(path, reason, detail) VALUES (?, ?, 'recovered')",
                         [(path, SkipReason.SYNTAX_ERROR.value) for path in recovered])

        # 5. Resolve changed files and every file whose recorded lookups meet a changed key.
        resolved, relinked_nodes = self._resolve(new_facts, changed_keys, linked, symbols, prior_bases,
                                                 stored={known[p][1] for p in replaced}, progress=progress)
        relinked = self._bump_relinked(relinked_nodes, {f.file_id for f in new_facts})

        gen = generation(conn)
        if intake.parsed_paths or gone:
            gen += 1
            conn.executemany("UPDATE meta SET value=? WHERE key=?",
                             [(str(gen), "generation"), (repr(now), "last_change")])
        if new_rules:
            conn.execute("INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)", (_GRAPH_RULES_KEY, str(GRAPH_RULES)))
        _commit(conn, self._checkpoints, merge_fts=len(intake.parsed_paths) >= MERGE_FTS_FILES)
        if progress:  # the last step: the pass is committed
            progress("resolve", resolved, resolved)
        counts = {}
        if full:  # whole-table counts cost ~0.2 s on a large index: only a full pass reports them
            counts = self._counts(symbols) if self._new_edges is not None else {
                "nodes_by_kind": dict(conn.execute("SELECT kind, count(*) FROM nodes GROUP BY kind").fetchall()),
                "edges_by_kind": dict(conn.execute("SELECT kind, count(*) FROM edges GROUP BY kind").fetchall()),
            }
            counts["skipped_by_reason"] = dict(conn.execute("SELECT reason, count(*) FROM skipped GROUP BY reason"))
        return {
            "changed_paths": tuple(sorted({*(p for p in replaced), *gone, *intake.parsed_paths})),
            "files_seen": plan.seen - len(bad),  # what the index holds: a file found binary on reading is out
            "files_parsed": len(intake.parsed_paths),
            "files_deleted": len(gone),
            "files_unchanged": plan.seen - len(intake.parsed_paths) - len(bad),
            "generation": gen,
            "relinked_paths": tuple(relinked),
            **counts,
        }

    def _counts(self, symbols: Symbols) -> dict[str, dict[str, int]]:
        """Nodes and edges by kind after a pass into an empty index, from what it wrote."""
        nodes = Counter(info.kind for info in symbols.nodes.values())
        libraries = self.conn.execute("SELECT count(*) FROM nodes WHERE kind='library'").fetchone()[0]  # indexed
        if libraries:
            nodes["library"] = libraries
        return {"nodes_by_kind": dict(nodes), "edges_by_kind": {k: n for k, n in self._new_edges.items() if n}}

    def _node_keys(self, old_facts: list[FileFacts]) -> Counter:
        """(kind, qualname, in test) of every node of the stored files, counted: what global lookups see of them."""
        keys: Counter = Counter()
        for facts in old_facts:
            for node_id in (facts.module_node, *facts.def_ids):
                info = self._symbols.nodes.get(node_id) if self._symbols else None
                if info is not None:
                    keys[(info.kind, info.qualname, info.in_test)] += 1
        return keys

    def _shape(self, facts: FileFacts) -> FileShape:
        """What other files' resolution can see of one file version."""
        nodes = Counter()
        for node_id in (facts.module_node, *facts.def_ids):
            info = self._symbols.nodes.get(node_id) if self._symbols else None
            if info is not None:
                nodes[(info.kind, info.qualname)] += 1
        # A star import counts as an entry of its own: what the module re-exports changes with it.
        imports = {alias if alias != "*" else "*" + module: (module, name)
                   for module, name, alias, _line, scope in facts.imports if scope == -1}
        fixtures = Counter()
        for index, name in facts.fixtures:
            info = self._symbols.nodes.get(facts.def_ids[index]) if self._symbols else None
            if info is not None:
                fixtures[(name, info.qualname)] += 1
        return FileShape(facts.module, facts.path, nodes, imports, fixtures)

    def _reusable_ids(self, facts: FileFacts) -> dict[tuple[str, str], list[int]]:
        """Old node ids of a file by (kind, qualname), in definition order."""
        out: dict[tuple[str, str], list[int]] = {}
        for node_id in (facts.module_node, *facts.def_ids):
            info = self._symbols.nodes.get(node_id)
            if info is not None:
                out.setdefault((info.kind, info.qualname), []).append(node_id)
        return out

    def _insert_parsed(self, parsed: Iterable[Loaded], current, modules, known, symbols: Symbols, now: float,
                       reuse: dict[int, dict[tuple[str, str], list[int]]], id_floor: int) -> list[FileFacts]:
        conn = self.conn
        next_id = id_floor + 1
        next_file = (conn.execute("SELECT max(id) FROM files").fetchone()[0] or 0) + 1
        file_rows, source_rows, node_rows, edge_rows, fts_rows, fact_rows = [], [], [], [], [], []
        out: list[FileFacts] = []

        def flush() -> None:
            conn.executemany("INSERT INTO files(id, path, module, hash, size, mtime, language, version, lines,"
                             " has_errors, indexed_at) VALUES (?,?,?,?,?,?,?,?,?,?,?)", file_rows)
            conn.executemany("INSERT OR REPLACE INTO sources(file_id, text) VALUES (?, ?)", source_rows)
            conn.executemany("INSERT INTO nodes(id, file_id, kind, name, qualname, parent_id, start_line, end_line,"
                             " signature, doc) VALUES (?,?,?,?,?,?,?,?,?,?)", node_rows)
            conn.executemany("INSERT INTO edges(src, kind, dst, confidence) VALUES (?,?,?,?)", edge_rows)
            if self._new_edges is not None:
                self._new_edges["contains"] += len(edge_rows)  # the only kind written here
            conn.executemany("INSERT INTO fts(rowid, name, path, doc, body) VALUES (?,?,?,?,?)", fts_rows)
            conn.executemany("INSERT OR REPLACE INTO file_facts(file_id, blob, node_ids) VALUES (?, ?, ?)",
                             fact_rows)
            for rows in (file_rows, source_rows, node_rows, edge_rows, fts_rows, fact_rows):
                rows.clear()

        for item in parsed:  # nothing else holds the text and terms once an item is written
            p: Parsed = item.parsed
            f = current[item.path]
            module = modules[item.path]
            if item.path in known:
                file_id = known[item.path][1]
                version = conn.execute("SELECT version FROM files WHERE id=?", (file_id,)).fetchone()[0] + 1
                conn.execute(
                    "UPDATE files SET module=?, hash=?, size=?, mtime=?, version=?, lines=?, has_errors=?,"
                    " indexed_at=? WHERE id=?",
                    (module, item.hash, f.size, f.mtime, version, p.lines, int(p.has_errors), now, file_id))
            else:
                file_id, next_file = next_file, next_file + 1
                file_rows.append((file_id, item.path, module, item.hash, f.size, f.mtime, p.language, 1,
                                  p.lines, int(p.has_errors), now))
            old = reuse.get(file_id, {})

            def node_id_for(kind: str, qualname: str) -> int:
                nonlocal next_id
                ids = old.get((kind, qualname))
                if ids:
                    return ids.pop(0)
                next_id += 1
                return next_id - 1

            source_rows.append((file_id, item.text))
            in_test = is_test_path(item.path)
            module_name = module.rsplit(".", 1)[-1]
            module_id = node_id_for("module", module)
            node_rows.append((module_id, file_id, "module", module_name, module, None, 1, max(p.lines, 1), "", p.doc))
            symbols.add_node(NodeInfo(module_id, "module", module_name, module, None, file_id, in_test, item.path))
            fts_rows.append((module_id, *p.search_terms[0]))
            def_ids: list[int] = []
            for (kind, name, local_name, parent_index, start, end, signature, doc), terms in zip(
                    p.definitions, p.search_terms[1:]):
                qualname = f"{module}.{local_name}" if module else local_name
                node_id = node_id_for(kind, qualname)
                def_ids.append(node_id)
                parent = def_ids[parent_index] if parent_index >= 0 else module_id
                node_rows.append((node_id, file_id, kind, name, qualname, parent, start, end, signature, doc))
                symbols.add_node(NodeInfo(node_id, kind, name, qualname, parent, file_id, in_test, item.path))
                edge_rows.append((parent, "contains", node_id, 1.0))
                fts_rows.append((node_id, *terms))
            facts = FileFacts.from_blob(p.facts, file_id=file_id, path=item.path, module=module,
                                        module_node=module_id, def_ids=tuple(def_ids))
            symbols.set_module_imports(facts)
            symbols.set_fixtures(facts)
            fact_rows.append((file_id, p.facts, msgpack.packb([module_id, *def_ids])))
            out.append(facts)
            if len(source_rows) >= _WRITE_BATCH:
                flush()
        flush()
        return out

    def _remove_old(self, old_facts: list[FileFacts], symbols: Symbols, *, keep_rows: set[int]) -> None:
        """Remove old versions' rows; edges into their nodes from other files stay (ids may be reused).

        A file parsed again (its row in ``keep_rows``) keeps its resolution, the edges from its nodes
        and its deps, until its new one is written: most of it is the same (see ``_write_resolutions``).
        """
        if not old_facts:
            return
        conn = self.conn
        file_ids = [f.file_id for f in old_facts]
        node_ids = [i for f in old_facts for i in (f.module_node, *f.def_ids)]
        for node_id in node_ids:
            symbols.remove_node(node_id)
        gone = [i for f in old_facts if f.file_id not in keep_rows for i in (f.module_node, *f.def_ids)]
        kept = [i for f in old_facts if f.file_id in keep_rows for i in (f.module_node, *f.def_ids)]
        self._delete_in("DELETE FROM edges WHERE src IN ({})", gone)
        self._delete_in("DELETE FROM edges WHERE kind = 'contains' AND src IN ({})", kept)
        fts_totals.note_removed(conn, node_ids)  # FTS5 would go on counting them in bm25()
        self._delete_in("DELETE FROM fts WHERE rowid IN ({})", node_ids)
        if self._has_table("node_vectors"):  # a vec0 table: no cascades reach it
            conn.executemany("DELETE FROM node_vectors WHERE node_id = ?", [(i,) for i in node_ids])
        self._delete_in("DELETE FROM nodes WHERE id IN ({})", node_ids)
        self._delete_in("DELETE FROM deps WHERE file_id IN ({})", [i for i in file_ids if i not in keep_rows])
        for table in ("file_facts", "sources"):
            self._delete_in(f"DELETE FROM {table} WHERE file_id IN ({{}})", file_ids)
        self._delete_in("DELETE FROM files WHERE id IN ({})", [i for i in file_ids if i not in keep_rows])

    def _has_table(self, name: str) -> bool:
        return self.conn.execute("SELECT 1 FROM sqlite_master WHERE name=?", (name,)).fetchone() is not None

    def _delete_in(self, sql: str, values: list) -> None:
        for chunk in _chunks(values):
            self.conn.execute(sql.format(",".join("?" * len(chunk))), chunk)

    # -- resolution ----------------------------------------------------------- #
    def _resolve(self, new_facts: list[FileFacts], changed_keys: set[str], linked: set[int], symbols: Symbols,
                 prior_bases: dict[int, list[int]], stored: set[int],
                 progress: Progress | None = None) -> tuple[int, list[int]]:
        """Resolve ``new_facts`` and their dependents; ``stored`` are the files whose old resolution is still
        stored. Returns how many files were resolved (progress counts them as their links are written), and
        the nodes at either end of an edge written or deleted."""
        dirty: dict[int, FileFacts] = {f.file_id: f for f in new_facts}
        stored = set(stored)
        stored |= self._add_dependents(dirty, changed_keys, linked)
        resolver = Resolver(symbols)
        results: dict[int, Resolution] = {}

        # Phase 1: bases. Resolving bases never walks the bases table, so the order does not matter.
        pending = list(dirty.values())
        while pending:
            changed_classes: set[str] = set()
            for facts in pending:
                out = results.setdefault(facts.file_id, Resolution())
                for class_id, bases in resolver.resolve_bases(facts, out).items():
                    before = prior_bases.get(class_id, symbols.bases.get(class_id, ()))
                    if set(before) != set(bases):
                        changed_classes.add("b:" + symbols.nodes[class_id].qualname)
                    if bases:
                        symbols.bases[class_id] = bases
                    else:  # as a table loaded from the store has it: no entry for a class without bases
                        symbols.bases.pop(class_id, None)
            known = set(dirty)
            if changed_classes:
                stored |= self._add_dependents(dirty, changed_classes)
            pending = [dirty[i] for i in dirty if i not in known]

        # Phase 2: everything else, against the complete bases table; the files no longer depend on each other.
        resolver.invalidate()
        files = list(dirty.values())
        nodes_of = {f.file_id: (f.module_node, *f.def_ids) for f in files if f.file_id in stored}
        dirty.clear()
        total = len(files)
        if progress:
            progress("resolve", 0, total)
        if len(files) >= _PARALLEL_RESOLVE_MIN and self.workers > 1 and can_fork():
            links = links_forked(symbols, files, self.workers, results)
        else:
            links = links_here(resolver, files, results)
        libraries = dict(self.conn.execute("SELECT qualname, id FROM nodes WHERE kind='library'").fetchall())  # indexed
        batch: list[Links] = []
        written = 0
        relinked: set[int] = set()
        for link in links:
            batch.append(link)
            if len(batch) >= _WRITE_BATCH:
                self._write_resolutions(batch, libraries, nodes_of, relinked)
                written += len(batch)
                batch.clear()
                if progress and written < total:  # the pass is not committed yet: never done/total here
                    progress("resolve", written, total)
        self._write_resolutions(batch, libraries, nodes_of, relinked)
        self._collect_libraries()
        return total, relinked

    def _bump_relinked(self, nodes: set[int], parsed: set[int]) -> list[str]:
        """Raise the version of the files of ``nodes`` (an end of a changed link) that were not parsed anew:
        their links changed while their bytes did not. Returns their paths.

        An answer about a file (its callers, importers, tests) is read from the links into it, and a cache
        entry knows the files it was built from only by their versions. Another process sees nothing else: a
        new ``caller.py`` calling ``beta_run`` left ``beta.py``'s cached context as it was, for hours.
        """
        files: set[int] = set()
        for chunk in _chunks(sorted(nodes)):
            files.update(r[0] for r in self.conn.execute(
                f"SELECT DISTINCT file_id FROM nodes WHERE id IN ({','.join('?' * len(chunk))}) "
                "AND file_id IS NOT NULL", chunk))
        ids = sorted(files - parsed)
        paths: list[str] = []
        for chunk in _chunks(ids):
            marks = ",".join("?" * len(chunk))
            self.conn.execute(f"UPDATE files SET version = version + 1 WHERE id IN ({marks})", chunk)
            paths.extend(r[0] for r in self.conn.execute(f"SELECT path FROM files WHERE id IN ({marks})", chunk))
        return sorted(paths)

    def _files_linking_to(self, node_ids: list[int]) -> set[int]:
        """Stored files with an edge into one of ``node_ids``."""
        out: set[int] = set()
        for chunk in _chunks(node_ids):
            out.update(r[0] for r in self.conn.execute(
                "SELECT DISTINCT n.file_id FROM edges e JOIN nodes n ON n.id = e.src "
                f"WHERE e.dst IN ({','.join('?' * len(chunk))}) AND n.file_id IS NOT NULL", chunk))
        return out

    def _add_dependents(self, dirty: dict[int, FileFacts], keys: set[str], files: set[int] = frozenset()) -> set[int]:
        """Add to ``dirty`` every stored file whose resolution made one of the lookups in ``keys``, and ``files``;
        returns the files added (their old resolution stays stored until the new one is written)."""
        if not keys and not files:
            return set()
        ids: set[int] = set(files)
        for chunk in _chunks(sorted(keys)):
            marks = ",".join("?" * len(chunk))
            ids.update(r[0] for r in self.conn.execute(
                f"SELECT DISTINCT file_id FROM deps WHERE name IN ({marks})", chunk))
        ids -= set(dirty)
        for facts in self._stored_facts(sorted(ids)):
            dirty[facts.file_id] = facts
        return ids

    def _write_resolutions(self, links: list[Links], libraries: dict[str, int],
                           nodes_of: dict[int, tuple[int, ...]], relinked: set[int]) -> None:
        """Edges and deps of resolved files; ``libraries`` (library name -> node id) gains the new ones, and
        ``relinked`` both ends of every edge written or deleted.

        A file in ``nodes_of`` (file -> its node ids) still has its previous resolution stored: only the
        difference is written. Re-resolving a file mostly gives the same rows (an edit inside one body
        changes a few of a large file's ~2,000 edges and ~1,500 deps), and deleting and inserting them
        all cost ~9 ms a pass of Django's query.py. Any other file's rows go in as the resolver made them
        (each is unique) and its lookups as the JSON list SQLite splits itself (see ``Links``).
        """
        conn = self.conn
        next_id = (conn.execute("SELECT max(id) FROM nodes").fetchone()[0] or 0) + 1
        edge_rows, dep_lists, dep_rows, new_libs, old_edges, old_deps = [], [], [], [], [], []
        for file_id, edges, library_edges, deps in links:
            for src, kind, dst, conf in library_edges:
                name = dst[len(LIBRARY):]
                lib_id = libraries.get(name)
                if lib_id is None:
                    lib_id = libraries[name] = next_id
                    next_id += 1
                    new_libs.append((lib_id, None, "library", name, name, None, 0, 0, "", ""))
                edges.append((src, kind, lib_id, conf))
            if file_id not in nodes_of:  # nothing stored to compare with: every row is new
                edge_rows += edges
                dep_lists.append((file_id, deps))
                continue
            rows = {(src, kind, dst): conf for src, kind, dst, conf in edges}
            keys = set(json.loads(deps))
            before = self._stored_resolution(file_id, nodes_of[file_id])
            old_edges += [key for key in before[0] if key not in rows]
            old_deps += [(key, file_id) for key in before[1] - keys]
            edge_rows += [(*key, conf) for key, conf in rows.items() if before[0].get(key) != conf]
            dep_rows += [(key, file_id) for key in keys - before[1]]
        if self._new_edges is None:  # an index with files: into an empty one nothing was cached
            for src, _, dst, *_ in (*old_edges, *edge_rows):
                relinked.add(src)
                relinked.add(dst)
        conn.executemany("INSERT INTO nodes(id, file_id, kind, name, qualname, parent_id, start_line, end_line,"
                         " signature, doc) VALUES (?,?,?,?,?,?,?,?,?,?)", new_libs)
        conn.executemany("DELETE FROM edges WHERE src = ? AND kind = ? AND dst = ?", old_edges)
        conn.executemany("DELETE FROM deps WHERE name = ? AND file_id = ?", old_deps)
        conn.executemany("INSERT OR REPLACE INTO edges(src, kind, dst, confidence) VALUES (?,?,?,?)", edge_rows)
        if self._new_edges is not None:
            self._new_edges.update(map(itemgetter(1), edge_rows))
        conn.executemany("INSERT OR IGNORE INTO deps(file_id, name) SELECT ?, value FROM json_each(?)", dep_lists)
        dep_rows.sort()  # in key order the b-tree inserts touch neighbouring pages: ~20% less insert time
        conn.executemany("INSERT OR IGNORE INTO deps(name, file_id) VALUES (?, ?)", dep_rows)

    def _stored_resolution(self, file_id: int, node_ids: tuple[int, ...]) -> tuple[dict, set[str]]:
        """A file's stored resolution: edges from its nodes (contains aside) with their confidences, and its deps."""
        edges: dict[tuple[int, str, int], float] = {}
        for chunk in _chunks(list(node_ids)):
            for src, kind, dst, conf in self.conn.execute(
                    "SELECT src, kind, dst, confidence FROM edges WHERE kind != 'contains' AND "
                    f"src IN ({','.join('?' * len(chunk))})", chunk):
                edges[(src, kind, dst)] = conf
        deps = {r[0] for r in self.conn.execute("SELECT name FROM deps WHERE file_id = ?", (file_id,))}
        return edges, deps

    def _collect_libraries(self) -> None:
        """Drop library nodes nobody uses any more."""
        self.conn.execute("DELETE FROM nodes WHERE kind='library' AND NOT EXISTS "
                          "(SELECT 1 FROM edges WHERE edges.dst = nodes.id)")

    # -- stored state --------------------------------------------------------- #
    def _stored_facts(self, file_ids: list[int]) -> list[FileFacts]:
        """Resolution facts of stored files, with their node ids."""
        out: list[FileFacts] = []
        for chunk in _chunks(file_ids):
            marks = ",".join("?" * len(chunk))
            for file_id, path, module, blob, ids in self.conn.execute(
                    f"SELECT f.id, f.path, f.module, ff.blob, ff.node_ids FROM files f "
                    f"JOIN file_facts ff ON ff.file_id=f.id WHERE f.id IN ({marks}) ORDER BY f.id", chunk):
                module_node, *def_ids = msgpack.unpackb(ids)
                out.append(FileFacts.from_blob(blob, file_id=file_id, path=path, module=module,
                                               module_node=module_node, def_ids=tuple(def_ids)))
        return out

    def _symbols_table(self) -> Symbols:
        """The cached symbol table, or one loaded from the store."""
        if self._symbols is None:
            self._symbols = load_symbols(self.conn)
        return self._symbols

    @property
    def has_symbols(self) -> bool:
        return self._symbols is not None

    def adopt_symbols(self, symbols: Symbols, snapshot: int) -> bool:
        """Take a table loaded elsewhere (see ``snapshot_symbols``) if no pass has run since its snapshot.

        ``snapshot`` is the generation it was loaded at. Call it holding the writer's lock; whether it was taken. A pass that ran meanwhile has
        its own table already, or changed the store the loaded table describes.
        """
        if self._symbols is not None or generation(self.conn) != snapshot:
            return False
        self._symbols = symbols
        return True


def snapshot_symbols(conn) -> tuple[Symbols, int]:
    """The symbol table of one snapshot of a read connection, and that snapshot's generation."""
    conn.execute("BEGIN")
    try:
        return load_symbols(conn), generation(conn)
    finally:
        conn.rollback()


def load_symbols(conn) -> Symbols:
    """The symbol table of what the store holds: what a pass built in memory, rebuilt after a restart.

    Library nodes stay out, as they do in a live pass: resolution names libraries by string
    (``lib:numpy``), and a library node pruned while it sat in the table left an id that SQLite hands
    to the next new node, so a lookup of the library's name found that node.
    """
    symbols = Symbols()
    files = {file_id: (file_id, path, is_test_path(path)) for file_id, path in conn.execute("SELECT id, path FROM files")}
    nodes = symbols.nodes
    # In id order a parent mostly comes before its members: they share its id object, and a node
    # shares its file's, instead of one int object per row (~2 MB on Django).
    for node_id, kind, name, qualname, parent, file_id in conn.execute(
            "SELECT id, kind, name, qualname, parent_id, file_id FROM nodes WHERE kind != 'library' ORDER BY id"):
        file_id, path, in_test = files.get(file_id, (file_id, "", False))
        if parent in nodes:
            parent = nodes[parent].id
        symbols.add_node(NodeInfo(node_id, kind, name, qualname, parent, file_id, in_test, path))
    expressions: dict[int, tuple[str, ...]] = {}  # class id -> its base expressions, for their order
    for file_id, module, blob, ids in conn.execute(
            "SELECT f.id, f.module, ff.blob, ff.node_ids FROM files f JOIN file_facts ff ON ff.file_id=f.id"):
        module_node, *def_ids = msgpack.unpackb(ids)
        facts = FileFacts.from_blob(blob, file_id=file_id, path="", module=module,
                                    module_node=module_node, def_ids=tuple(def_ids))
        symbols.set_module_imports(facts)
        symbols.set_fixtures(facts)
        expressions.update((facts.def_ids[index], bases) for index, bases in facts.bases)
    for src, dst in conn.execute("SELECT src, dst FROM edges WHERE kind='inherits' ORDER BY src, dst"):
        symbols.bases.setdefault(src, []).append(dst)
    for class_id, bases in symbols.bases.items():
        if len(bases) > 1:
            bases[:] = ordered_bases(expressions.get(class_id, ()), bases, nodes)
    return symbols


def _parsed_node_keys(parsed: list[Loaded], modules: dict[str, str]) -> Counter:
    """(kind, qualname, in test) of every node the parsed files will have, counted (see ``_node_keys``)."""
    keys: Counter = Counter()
    for item in parsed:
        module, in_test = modules[item.path], is_test_path(item.path)
        keys[("module", module, in_test)] += 1
        for kind, _name, local_name, *_rest in item.parsed.definitions:
            keys[(kind, f"{module}.{local_name}" if module else local_name, in_test)] += 1
    return keys


def _commit(conn, checkpoints: _Checkpoints, *, merge_fts: bool = False) -> None:
    """Commit the pass, then have the WAL copied into the database in the background.

    A commit that finds the WAL past the autocheckpoint limit copies it back before it returns:
    ~0.3 s after a cold index of Django, and 4-8 ms of a one-file pass (with ~380 pages a pass of
    ``query.py``, every commit found the limit passed). The data is safe in the WAL from the commit
    on, and a passive checkpoint blocks no reader or writer, so the pass returns at its commit.
    ``merge_fts``: the pass wrote many files' search terms; merge the FTS segments first (``_Checkpoints``).
    """
    (limit,) = conn.execute("PRAGMA wal_autocheckpoint").fetchone()
    conn.execute("PRAGMA wal_autocheckpoint=0")
    try:
        conn.commit()
        fts_totals.settle(conn)  # the deleted rows leave bm25()'s figures: a transaction of its own
    finally:
        conn.execute(f"PRAGMA wal_autocheckpoint={int(limit)}")
    checkpoints.request(conn, merge_fts=merge_fts)


class _Checkpoints:
    """Runs passive WAL checkpoints of one database in a background thread, one at a time.

    A request while one runs makes it run once more when done, so a burst of passes costs a
    checkpoint or two, and the thread ends when nothing is asked (nothing to stop on close).

    After a pass that wrote many files' search terms it first merges the FTS index into one segment.
    A bulk insert leaves FTS5 with dozens of small segments that its automerge folds together a
    little at every later write: after a cold index of Django the first ~8 one-file passes took
    45-61 ms instead of ~30 ms and grew the WAL to 12 MB. Merged here (~0.14 s, after the pass's
    commit: the pass is already visible, and the merge changes no answer), every pass takes ~30 ms
    from the first.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._again = False
        self._merge = False

    def request(self, conn, *, merge_fts: bool = False) -> None:
        path = conn.execute("PRAGMA database_list").fetchone()[2]
        if not path:  # an in-memory database has no WAL
            return
        with self._lock:
            self._merge |= merge_fts
            if self._thread is not None:
                self._again = True
                return
            self._thread = threading.Thread(target=self._run, args=(path,), name="codeahead-checkpoint")
            self._thread.start()

    def wait(self) -> None:
        """Block until no checkpoint runs."""
        while (thread := self._thread) is not None:
            thread.join()

    def _run(self, path: str) -> None:
        while True:
            with self._lock:
                merge, self._merge = self._merge, False
            _checkpoint(path, merge_fts=merge)
            with self._lock:
                if not self._again:
                    self._thread = None
                    return
                self._again = False


def _checkpoint(path: str, *, merge_fts: bool = False) -> None:
    """Best effort: a checkpoint that fails (the index was removed meanwhile) is left to the next one or close."""
    if not os.path.exists(path):  # connecting would create an empty database there
        return
    try:
        conn = sqlite.connect(path, vectors=False)
        try:
            if merge_fts:
                _merge_fts(conn)
            conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
        finally:
            conn.close()
    except sqlite.DatabaseError as exc:
        log.debug("background checkpoint of %s skipped: %s", path, exc)


def _merge_fts(conn) -> None:
    """Merge the FTS index into one segment, a bounded step per transaction (as 'optimize' does at once).

    Each step writes ~``_MERGE_PAGES`` pages (10-36 ms on Django, 10 steps, 0.14 s in all), so a pass
    that starts meanwhile waits for one step, not the whole merge. FTS5 says the merge is done when a
    step changes fewer than two rows.
    """
    while True:
        with conn:
            before = conn.total_changes
            conn.execute("INSERT INTO fts(fts, rank) VALUES('merge', ?)", (-_MERGE_PAGES,))
            if conn.total_changes - before < 2:
                return


def _is_init(path: str) -> bool:
    """Whether ``path`` is a package's ``__init__`` file (its presence makes the folder a package)."""
    return path.rsplit("/", 1)[-1] in ("__init__.py", "__init__.pyi")


def _chunks(values: list, size: int = _SQL_CHUNK):
    for i in range(0, len(values), size):
        yield values[i : i + size]

