"""The ``codeahead`` command line: thin calls on ``indexer.Workspace``.

Every command takes ``--workspace``, ``--index-dir`` and ``--json``. With
``--json`` stdout carries one JSON object and nothing else; progress and logs
go to stderr. Bad input exits non-zero with a one-line reason.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

from indexer.graph.query import MAX_LINKS

EXIT_BAD_INPUT = 2


class CliError(Exception):
    """Bad input: printed as one line, exit code 2."""


# --------------------------------------------------------------------------- #
# argument parsing
# --------------------------------------------------------------------------- #

def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--workspace", "-w", default=None, help="workspace folder (default: current folder)")
    parser.add_argument("--index-dir", default=None,
                        help="folder for the index database (default: user cache dir, or $CODEAHEAD_INDEX_DIR)")
    parser.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    parser.add_argument("--verbose", "-v", action="store_true", help="log to stderr")


class _Parser(argparse.ArgumentParser):
    """Bad arguments as one line, like every other bad input (argparse printed the usage block first)."""

    def error(self, message: str):
        self.exit(EXIT_BAD_INPUT, f"{self.prog}: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="codeahead", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("index", help="index a workspace (only changed files are re-parsed)")
    p.add_argument("path", nargs="?", default=None, help="workspace folder (same as --workspace)")
    _common(p)

    p = sub.add_parser("status", help="counts, skipped files and freshness of the index")
    _common(p)

    p = sub.add_parser("graph", help="the two-way links of a node")
    p.add_argument("target", help="path, path:line or a dotted symbol")
    p.add_argument("--depth", type=int, default=1)
    p.add_argument("--kinds", default=None, help="comma-separated link names, e.g. calls,called_by,tested_by")
    _common(p)

    p = sub.add_parser("search", help="ranked code locations for a query")
    p.add_argument("query")
    p.add_argument("--top-k", type=int, default=10)
    p.add_argument("--kind", default=None, help="only nodes of this kind (function, class, method, test, module)")
    _common(p)

    p = sub.add_parser("context", help="the packed context for a query / focus / task, within a token budget")
    p.add_argument("query", nargs="?", default=None)
    p.add_argument("--focus", default=None, help="PATH[:LINE] or a dotted SYMBOL")
    p.add_argument("--task", default=None, help="task id of the event log")
    p.add_argument("--budget", type=int, default=None, help="context budget in tokens (wins over the profile's share)")
    p.add_argument("--profile", default=None, help="model profile, e.g. ollama-4k (default), qwen3-8b-32k, custom:N; "
                                                   "it also picks the tokenizer the budget is counted with")
    _common(p)

    p = sub.add_parser("event", help="append an event to a task's log")
    p.add_argument("type", help="task_started, file_edited, test_result, error, iteration, note, ...")
    p.add_argument("--task", required=True)
    p.add_argument("--data", default=None, help="JSON object")
    _common(p)

    p = sub.add_parser("task", help="a task's state, replayed from its events")
    p.add_argument("task_id")
    p.add_argument("--at", type=int, default=None, help="replay up to this event sequence number")
    _common(p)

    p = sub.add_parser("watch", help="watch the workspace and keep the index fresh (foreground)")
    p.add_argument("path", nargs="?", default=None, help="workspace folder (same as --workspace)")
    _common(p)

    p = sub.add_parser("predict", help="the files likely needed next, with reasons")
    p.add_argument("--after", default=None, help="the current file (default: the task's last file)")
    p.add_argument("--task", default=None, help="task id of the event log")
    p.add_argument("--top-k", type=int, default=5)
    p.add_argument("--reset", action="store_true", help="forget everything the model learned")
    _common(p)

    p = sub.add_parser("stats", help="cache hit rates per tier and entries on disk, and the prediction "
                                     "model's accuracy")
    _common(p)

    p = sub.add_parser("serve", help="run the MCP server (stdio by default)")
    p.add_argument("--http", action="store_true", help="serve streamable HTTP instead of stdio")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8765)
    p.add_argument("--token", default=None, help="bearer token required on HTTP (or $CODEAHEAD_TOKEN)")
    p.add_argument("--allow-host", action="append", default=[], metavar="NAME",
                   help="another name clients reach the HTTP server by (repeatable; DNS-rebinding protection "
                        "refuses any other)")
    p.add_argument("--no-watch", action="store_true", help="do not watch the workspace for changes")
    _common(p)
    return parser


# --------------------------------------------------------------------------- #
# output
# --------------------------------------------------------------------------- #

def _emit(args, payload: dict, text: str, *, exact: bool = False) -> None:
    """``exact``: the text is a budgeted answer, written byte for byte when piped (a newline of our own could be
    the token over budget); a terminal still gets its line end."""
    if args.json:
        sys.stdout.write(json.dumps(payload, default=str) + "\n")
    elif exact and not sys.stdout.isatty():
        sys.stdout.write(text)
    else:
        sys.stdout.write(text.rstrip("\n") + "\n")


class _ProgressBar:
    """A one-line progress bar on stderr, only when stderr is a terminal (and ``bar``); a wait for another
    process is always said."""

    def __init__(self, bar: bool = True) -> None:
        from indexer.workspace import WAITING_PHASE

        self.enabled = bar and sys.stderr.isatty()
        self._waiting = WAITING_PHASE
        self._last = 0.0

    def __call__(self, phase: str, done: int, total: int) -> None:
        if phase == self._waiting:  # said even when stderr is no terminal: a silent wait looks like a hang
            sys.stderr.write("waiting for another codeahead process to finish its index pass...\n")
            sys.stderr.flush()
            return
        if not self.enabled:
            return
        now = time.monotonic()
        if done < total and now - self._last < 0.1:
            return
        self._last = now
        width = 30
        filled = int(width * done / total) if total else width
        sys.stderr.write(f"\r{phase:<8} [{'#' * filled}{'.' * (width - filled)}] {done}/{total}")
        if done >= total:
            sys.stderr.write("\n")
        sys.stderr.flush()


def _workspace(args, *, path_arg: str | None = None):
    from indexer.workspace import Workspace, WorkspaceError

    for option, value in (("--workspace", args.workspace), ("--index-dir", args.index_dir), ("PATH", path_arg)):
        if value is not None and not value.strip():  # "" fell back to the current folder, or the user cache
            raise CliError(f"{option} is empty: pass a folder, or leave the option out")
    root = path_arg or args.workspace or "."
    if path_arg and args.workspace and Path(path_arg).resolve() != Path(args.workspace).resolve():
        raise CliError(f"two workspaces given ({path_arg} and --workspace {args.workspace}): pass one")
    try:
        return Workspace(root, index_dir=args.index_dir)
    except (WorkspaceError, ValueError) as exc:
        raise CliError(str(exc)) from None


def _ensure_indexed(ws, args) -> None:
    """Commands that read the index bring it up to date first (cheap when nothing changed).

    Vectors are stored in the index, so only nodes new since the last run are embedded.
    """
    ws.index(progress=_ProgressBar(bar=not args.json))
    _mine_history(ws)
    ws.enable_vectors(wait=True)


def _mine_history(ws) -> None:
    """Past commit messages for the ranking (cheap when HEAD has not moved); a failure only warns."""
    from indexer.search.history import HistoryError

    try:
        ws.mine_history()
    except HistoryError as exc:
        sys.stderr.write(f"warning: no commit history for ranking: {exc}\n")


def _table(counts: dict) -> str:
    return ", ".join(f"{k} {v}" for k, v in sorted(counts.items())) or "none"


# --------------------------------------------------------------------------- #
# commands
# --------------------------------------------------------------------------- #

def cmd_index(args) -> None:
    with _workspace(args, path_arg=args.path) as ws:
        stats = ws.index(progress=_ProgressBar(bar=not args.json))
        _mine_history(ws)
        ws.enable_vectors(wait=True)
        payload = {
            "workspace": str(ws.root), "index": str(ws.db_path), "seconds": round(stats.seconds, 3),
            "files": stats.files_seen, "parsed": stats.files_parsed, "deleted": stats.files_deleted,
            "unchanged": stats.files_unchanged, "nodes": stats.nodes_by_kind, "edges": stats.edges_by_kind,
            "skipped": stats.skipped_by_reason, "freshness": ws.freshness(),
        }
        text = (
            f"indexed {ws.root} in {stats.seconds:.2f}s: {stats.files_seen} files "
            f"({stats.files_parsed} parsed, {stats.files_unchanged} unchanged, {stats.files_deleted} deleted)\n"
            f"nodes: {_table(stats.nodes_by_kind)}\n"
            f"edges: {_table(stats.edges_by_kind)}\n"
            f"skipped: {_table(stats.skipped_by_reason)}"
        )
        _emit(args, payload, text)


def cmd_status(args) -> None:
    with _workspace(args) as ws:
        # Changes made while nothing watched are counted before it says the index is fresh.
        ws.index(progress=_ProgressBar(bar=not args.json))
        status = ws.status()
        lines = [
            f"workspace {status['workspace']}",
            f"index     {status['index']}",
            f"files     {status['files']}",
            f"nodes     {_table(status['nodes'])}",
            f"edges     {_table(status['edges'])}",
            f"freshness generation {status['freshness']['generation']}, last change {status['freshness']['last_change']}",
            "history   " + (f"{status['history']['commits']} commits mined at {status['history']['head'][:12]}"
                             if status["history"] else "none (not a git repository, or not mined yet)"),
            "vectors   " + (f"{v['embedded']} of {v['total']} nodes embedded ({v['embedder']})"
                             if (v := status["vectors"]) else "none (CODEAHEAD_EMBEDDER, the vectors extra)"),
            f"skipped   {_table(status['skipped_by_reason'])}",
        ]
        lines += [f"  {s['reason']:<13} {s['path']}  {s['detail']}".rstrip() for s in status["skipped"]]
        _emit(args, status, "\n".join(lines))


def cmd_graph(args) -> None:
    from indexer.graph.query import UnknownTarget, link_direction, via_names

    if args.depth < 1:
        raise CliError(f"--depth must be >= 1, not {args.depth}")
    kinds = [k.strip() for k in args.kinds.split(",") if k.strip()] if args.kinds else None
    with _workspace(args) as ws:
        _ensure_indexed(ws, args)
        try:
            matches = ws.nodes(args.target)
            node = matches[0]
            links = ws.related(node, kinds=kinds, depth=args.depth, direction=link_direction(kinds, None),
                               limit=MAX_LINKS + 1)
        except (UnknownTarget, ValueError) as exc:
            raise CliError(str(exc).strip("'\"")) from None
        _note_ambiguity(args, args.target, matches)
        truncated = len(links) > MAX_LINKS
        links = links[:MAX_LINKS]
        via = via_names(links)  # links come nearest first, so a deeper one says which it was reached through
        payload = {
            "node": _node_json(node),
            "matches": len(matches),
            "truncated": truncated,
            "links": [{"link": l.name, "depth": l.depth, **({"via": via[i]} if i in via else {}),
                       "confidence": round(l.confidence, 3), **_node_json(l.node)} for i, l in enumerate(links)],
            "freshness": ws.freshness(),
        }
        lines = [f"{node.kind.value} {node.qualname}  {node.location}"]
        lines += [f"{'  ' * l.depth}{l.name:<13} {l.node.kind.value:<8} {l.node.qualname}  "
                  f"{l.node.location if l.node.path else ''}  ({l.confidence:.2f})".rstrip()
                  + (f"  via {via[i]}" if i in via else "") for i, l in enumerate(links)]
        if not links:
            lines.append("  (no links)")
        if truncated:
            lines.append(f"  (the first {MAX_LINKS} links, nearest first: narrow with --kinds or --depth)")
        _emit(args, payload, "\n".join(lines))


def _note_ambiguity(args, target: str, matches) -> None:
    """Say on stderr (never stdout: ``--json``) which node a target naming several was taken to mean."""
    from indexer.graph.query import ambiguity

    note = ambiguity(target, matches)
    if note:
        sys.stderr.write(f"codeahead {args.command}: {note}\n")


def _node_json(node) -> dict:
    return {"name": node.qualname, "kind": node.kind.value, "path": node.path,
            "start_line": node.start_line, "end_line": node.end_line}


def cmd_search(args) -> None:
    from indexer.types import vector_only_note

    if args.top_k < 1:
        raise CliError(f"--top-k must be >= 1, not {args.top_k}")
    with _workspace(args) as ws:
        _ensure_indexed(ws, args)
        try:
            hits = ws.search(args.query, top_k=args.top_k, kind=args.kind)
        except ValueError as exc:
            raise CliError(str(exc)) from None
        payload = {"hits": [h.to_json() for h in hits], "freshness": ws.freshness()}
        note = vector_only_note(hits)
        if note:
            payload["note"] = note
            sys.stderr.write(f"codeahead search: note: {note}\n")
        lines = [f"{h.score:6.3f}  {h.node.location}  {h.node.kind.value} {h.node.qualname}" for h in hits]
        _emit(args, payload, "\n".join(lines) or "no hits")


def cmd_context(args) -> None:
    from indexer.events import UnknownTask
    from indexer.graph.query import UnknownTarget

    if not ((args.query or "").strip() or args.focus or args.task):
        raise CliError("context needs a QUERY (not blank), --focus or --task")
    with _workspace(args) as ws:
        _ensure_indexed(ws, args)
        try:
            packed = ws.context(args.query, focus=args.focus, task_id=args.task,
                                budget=args.budget, profile=args.profile)
            if args.focus:
                _note_ambiguity(args, args.focus, ws.nodes(args.focus))
        except (ValueError, UnknownTarget, UnknownTask) as exc:
            raise CliError(str(exc).strip("'\"")) from None
        payload = {**packed.to_json(), "freshness": ws.freshness()}
        if not packed.items:  # an empty answer on stdout must not look like a silent failure
            why = (f"a budget of {packed.budget} tokens fits none of the {len(packed.dropped)} candidates"
                   if packed.dropped else "nothing in the index matches")
            sys.stderr.write(f"codeahead context: note: the context is empty: {why}\n")
        _emit(args, payload, packed.text, exact=True)


def cmd_event(args) -> None:
    try:
        data = json.loads(args.data) if args.data else None
    except json.JSONDecodeError as exc:
        raise CliError(f"--data is not valid JSON: {exc}") from None
    if data is not None and not isinstance(data, dict):
        raise CliError("--data must be a JSON object")
    with _workspace(args) as ws:
        note = ws.unstarted_task_note(args.task, args.type)
        try:
            event = ws.record(args.task, args.type, data)
        except ValueError as exc:
            raise CliError(str(exc)) from None
        payload = {"seq": event.seq, "task_id": event.task_id, "type": event.type, "data": event.data,
                   **({"note": note} if note else {})}
        if note:
            sys.stderr.write(f"codeahead event: note: {note}\n")
        _emit(args, payload, f"recorded #{event.seq} {event.type} for task {event.task_id}")


def cmd_task(args) -> None:
    from indexer.events import UnknownTask

    with _workspace(args) as ws:
        try:
            state = ws.task_state(args.task_id, at=args.at)
        except (UnknownTask, ValueError) as exc:
            raise CliError(str(exc).strip("'\"")) from None
        payload = state.to_json()
        text = json.dumps(payload, indent=2, default=str, ensure_ascii=False)  # a title in any script, as written
        if args.at is not None and args.at > state.seq:
            note = f"the task's log ends at #{state.seq}: this is its state now"
            text += f"\n({note})"
            payload["note"] = note
        _emit(args, payload, text)


#: Paths a watch line names; the rest are counted.
WATCH_LINE_PATHS = 3


class _EndSaidByWatch(logging.Filter):
    """Drops the watcher's log line about why it stopped: ``watch`` says it itself, in its one last line."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("codeahead watcher stopped")


def cmd_watch(args) -> None:
    logging.getLogger("indexer.watch").addFilter(_EndSaidByWatch())
    with _workspace(args, path_arg=args.path) as ws:
        bar = _ProgressBar(bar=not args.json)
        stats = ws.index(progress=bar)
        _mine_history(ws)

        def applied(batch, result) -> None:
            paths = sorted(batch.changed | batch.deleted | {d + "/" for d in batch.deleted_dirs})
            named = ", ".join(paths[:WATCH_LINE_PATHS]) + (f" +{len(paths) - WATCH_LINE_PATHS} more"
                                                           if len(paths) > WATCH_LINE_PATHS else "")
            why = " (a full pass: ignore rules changed or events were lost)" if (
                batch.ignore_files_changed or batch.rescan) else ""
            line = (f"{time.strftime('%H:%M:%S')} applied {len(batch)} change(s) in {result.seconds * 1000:.0f} ms: "
                    f"{result.files_parsed} parsed, {result.files_deleted} deleted -> generation {result.generation}"
                    + (f": {named}" if named else "") + why)
            if args.json:
                sys.stdout.write(json.dumps({"time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                                             "changes": len(batch), "paths": paths[:100],
                                             "full_pass": bool(batch.ignore_files_changed or batch.rescan),
                                             "parsed": result.files_parsed,
                                             "deleted": result.files_deleted, "generation": result.generation,
                                             "ms": round(result.seconds * 1000, 1)}) + "\n")
                sys.stdout.flush()
            else:
                sys.stderr.write(line + "\n")

        def mined(summary: dict) -> None:
            if args.json:
                sys.stdout.write(json.dumps({"history": summary}) + "\n")
                sys.stdout.flush()
            else:
                sys.stderr.write(f"{time.strftime('%H:%M:%S')} HEAD moved to {summary['head'][:12]}: "
                                 f"{summary['commits']} commits mined for the ranking\n")

        ws.start_watching(on_applied=applied, on_history=mined)
        ws.enable_vectors()  # in the background, as the server does: each batch's new nodes are embedded after it
        sys.stderr.write(f"indexed {stats.files_seen} files in {stats.seconds:.2f}s; watching {ws.root} "
                         "(Ctrl-C to stop)\n")  # once the watcher is started: a save from now on is seen
        try:
            while ws.watcher.ended is None:
                time.sleep(0.5)
        except KeyboardInterrupt:
            return
        finally:
            ended = ws.watcher.ended
            ws.stop_watching()
        raise CliError(f"stopped watching: {ended}")


def cmd_predict(args) -> None:
    from indexer.events import UnknownTask
    from indexer.graph.query import UnknownTarget

    with _workspace(args) as ws:
        if args.reset:
            ws.reset_predictions()
            _emit(args, {"reset": True}, "prediction model reset")
            return
        if args.top_k < 1:
            raise CliError(f"--top-k must be >= 1, not {args.top_k}")
        if args.after is not None and not args.after.strip():
            raise CliError("--after is empty: pass the current file, or leave the option out")
        _ensure_indexed(ws, args)
        ws.predictor.mine_git(ws.root)  # co-change from the workspace's git history, as the server learns it
        try:
            predictions = ws.predict(args.after, task_id=args.task, top_k=args.top_k)
        except (UnknownTask, UnknownTarget, ValueError) as exc:
            raise CliError(str(exc).strip("'\"")) from None
        payload = {"predictions": [{"path": p.path, "score": p.score, "reasons": p.reasons} for p in predictions],
                   "model": ws.predictor.stats(), "freshness": ws.freshness()}
        lines = [f"{p.score:6.3f}  {p.path}  ({'; '.join(p.reasons)})" for p in predictions]
        _emit(args, payload, "\n".join(lines) or "no prediction yet: record file events (codeahead event file_opened)")


def cmd_stats(args) -> None:
    with _workspace(args) as ws:
        status = ws.status()
        stored = ws.cache.stored_hits()
        payload = {"cache": status["cache"], "stored_hits": stored, "prediction": ws.predictor.stats(),
                   "freshness": status["freshness"]}
        # Hits and misses are this process's lookups (a server reports its own in index_status); entries, bytes
        # and the hits they served are what the cache holds on disk, for every process that used it.
        lines = ["tier      hits  misses  hit rate  entries      bytes  served   (hits and misses: this process; "
                 "served: by the entries on disk)"]
        for tier, t in status["cache"]["tiers"].items():
            rate = f"{t['hit_rate']:.1%}" if t["hits"] + t["misses"] else "-"  # no lookup: no rate, not 0%
            lines.append(f"{tier:<8} {t['hits']:>5} {t['misses']:>7} {rate:>9} {t['entries']:>8} {t['bytes']:>10} "
                         f"{stored[tier]:>7}")
        model = payload["prediction"]
        shown = {k: "-" if model[k] is None else model[k] for k in ("hit_at_5", "mrr")}
        lines.append(f"prediction: {model['moves_scored']} moves scored, hit@5 {shown['hit_at_5']}, "
                     f"mrr {shown['mrr']}, {model['files_known']} files known")
        _emit(args, payload, "\n".join(lines))


def cmd_serve(args) -> None:
    from server.mcp_server import ServeError, serve

    if args.workspace is not None and not args.workspace.strip():
        raise CliError("--workspace is empty: pass a folder, or leave the option out for the client's root")
    if not 0 <= args.port <= 65535:
        raise CliError(f"--port must be between 0 and 65535, not {args.port}")
    try:
        serve(workspace=args.workspace, index_dir=args.index_dir, http=args.http, host=args.host, port=args.port,
              token=args.token, watch=not args.no_watch, allow_hosts=tuple(args.allow_host))
    except ServeError as exc:
        raise CliError(str(exc)) from None


COMMANDS = {
    "index": cmd_index, "status": cmd_status, "graph": cmd_graph, "search": cmd_search, "context": cmd_context,
    "event": cmd_event, "task": cmd_task, "watch": cmd_watch, "serve": cmd_serve, "predict": cmd_predict,
    "stats": cmd_stats,
}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, stream=sys.stderr,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        COMMANDS[args.command](args)
    except CliError as exc:
        sys.stderr.write(f"codeahead {args.command}: {exc}\n")
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
