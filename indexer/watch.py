"""File watcher: turns a stream of filesystem events into few, coalesced change batches.

A watchdog observer reports raw events; this module filters them (ignore rules,
editor droppings, the index's own writes), merges them into one pending batch,
and hands the batch to ``apply`` on a single worker thread once the workspace
has been quiet for ``debounce`` seconds, or at the latest ``max_delay`` seconds
after the batch's first event. Whether a path counts as changed or deleted is
decided by looking at the disk when the batch is flushed, so event order and
editors' save dances (write temp, rename over) do not matter.

The consumer applies a batch in this order: drop everything under
``deleted_dirs``, drop ``deleted``, then (re)index ``changed``. A batch may
also say only that git's HEAD or a branch moved (``refs_changed``): a commit
of files indexed already changes no file the index reads, but it changes
the history the ranking and the predictor learn from.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

from watchdog.events import (
    DirCreatedEvent,
    DirDeletedEvent,
    DirMovedEvent,
    EventsLostEvent,
    FileCreatedEvent,
    FileDeletedEvent,
    FileModifiedEvent,
    FileMovedEvent,
    FileSystemEvent,
    FileSystemEventHandler,
)
from watchdog.observers import Observer

logger = logging.getLogger(__name__)

#: Files whose change means the consumer's ignore rules are stale.
IGNORE_FILE_NAMES = frozenset({".gitignore", ".codeaheadignore"})
DEFAULT_SUFFIXES = (".py", ".pyi")
#: Folders never worth watching, wherever they appear.
_IGNORED_DIR_NAMES = frozenset({".git"})
# Editor swap/backup/probe files (vim, emacs, atomic-save temporaries).
_SWAP_SUFFIXES = (".swp", ".swo", ".swx", "~", ".tmp")
_SWAP_PREFIXES = (".#",)
_SWAP_NAMES = frozenset({"4913"})  # vim writes this to probe that a folder is writable
# SQLite writes these next to a database file.
_DB_SIDECARS = ("", "-wal", "-shm", "-journal")
#: Event types worth a batch; opened/closed/attrib events and folder "modified" are noise.
_EVENT_FILTER: list[type[FileSystemEvent]] = [
    FileCreatedEvent,
    FileModifiedEvent,
    FileDeletedEvent,
    FileMovedEvent,
    DirCreatedEvent,
    DirDeletedEvent,
    DirMovedEvent,
    EventsLostEvent,  # the kernel's queue overflowed: some changes will never be reported
]
_DEFAULT_STOP_TIMEOUT = 5.0


@dataclass(frozen=True, slots=True)
class ChangeBatch:
    """What changed under the root since the last batch, paths relative and POSIX."""

    changed: frozenset[str]  # files that exist on disk at flush time
    deleted: frozenset[str]  # files that do not
    deleted_dirs: frozenset[str]  # folders gone or moved away: drop everything below
    ignore_files_changed: frozenset[str]  # .gitignore / .codeaheadignore touched
    events: int  # raw (filtered) events coalesced into this batch
    first_event_at: float  # time.monotonic()
    flushed_at: float  # time.monotonic()
    refs_changed: bool = False  # git's HEAD or a branch ref was written: the history may have moved
    #: Events were lost (inotify's queue overflowed while the watcher fell behind): only a full pass, which
    #: compares every file with the index, can tell what changed.
    rescan: bool = False

    def __len__(self) -> int:
        """Files and folders to apply (a moved ref alone counts none; a rescan counts one)."""
        return (
            int(self.rescan)
            + len(self.changed)
            + len(self.deleted)
            + len(self.deleted_dirs)
            + len(self.ignore_files_changed)
        )


@dataclass(slots=True)
class _Pending:
    """The batch being collected: raw paths, classified only at flush time."""

    files: set[str] = field(default_factory=set)
    deleted_dirs: set[str] = field(default_factory=set)
    dirs_to_scan: set[str] = field(default_factory=set)
    refs_changed: bool = False
    rescan: bool = False
    events: int = 0
    first_at: float | None = None
    last_at: float = 0.0

    def size(self) -> int:
        return len(self.files) + len(self.deleted_dirs) + len(self.dirs_to_scan)


def is_editor_droppings(name: str) -> bool:
    """True for swap, backup, lock and temp files editors leave next to real files."""
    return (
        name in _SWAP_NAMES
        or name.endswith(_SWAP_SUFFIXES)
        or name.startswith(_SWAP_PREFIXES)
        or (len(name) > 1 and name.startswith("#") and name.endswith("#"))
    )


def _outermost(dirs: Iterable[str]) -> set[str]:
    """The folders not below another folder of the set (a scan/drop of those covers all)."""
    out: set[str] = set()
    for d in sorted(dirs):  # a parent sorts right before its children's prefix
        if not any(d.startswith(p + "/") for p in out):
            out.add(d)
    return out


class _Forward(FileSystemEventHandler):
    """Hands every watchdog event to the watcher (keeps watchdog's API out of Watcher)."""

    def __init__(self, sink: Callable[[FileSystemEvent], None]) -> None:
        self._sink = sink

    def on_any_event(self, event: FileSystemEvent) -> None:
        self._sink(event)


class WatchEnded(Exception):
    """Raised by ``apply`` when watching can no longer work (the workspace or the index folder is gone):
    the watcher stops, and ``ended`` says why, instead of failing on every later change."""


class Watcher:
    """Watches ``root`` recursively and calls ``apply`` with coalesced ``ChangeBatch``es."""

    def __init__(
        self,
        root: Path,
        apply: Callable[[ChangeBatch], None],
        *,
        is_ignored: Callable[[str, bool], bool] | None = None,
        debounce: float = 0.05,
        max_delay: float = 1.0,
        on_error: Callable[[BaseException], None] | None = None,
        self_paths: Iterable[Path] = (),
        suffixes: Iterable[str] = DEFAULT_SUFFIXES,
        git_dir: Path | None = None,
        git_common_dir: Path | None = None,
    ) -> None:
        """``git_dir`` / ``git_common_dir`` (default: ``root/.git`` for both) are where the workspace's HEAD
        and its branches live (``git.git_dirs``); a folder inside a larger repository or a linked work tree
        has them outside ``root``, and they are then watched too."""
        if debounce < 0 or max_delay <= 0:
            raise ValueError(
                f"watcher timing debounce={debounce}, max_delay={max_delay} is invalid; "
                "use debounce >= 0 and max_delay > 0"
            )
        self.root = Path(os.path.abspath(root))
        self._root_prefix = str(self.root) + os.sep
        self._apply = apply
        self._is_ignored = is_ignored
        self._debounce = debounce
        self._max_delay = max_delay
        self._on_error = on_error or _log_error
        self._self_paths = tuple(os.path.abspath(p) for p in self_paths)
        self._suffixes = tuple(suffixes)
        # Writes that move HEAD: a checkout rewrites HEAD, a commit, reset or pull a branch ref (loose or
        # packed). git writes each to a ``.lock`` file first and renames it over the ref.
        git_dir = Path(os.path.abspath(git_dir or self.root / ".git"))
        common = Path(os.path.abspath(git_common_dir or git_dir))
        self._head_files = frozenset({str(git_dir / "HEAD"), str(common / "packed-refs")})
        self._branches = str(common / "refs" / "heads")
        # Folders outside root to watch for those writes: (folder, recursive).
        self._git_watches = [(d, rec) for d, rec in {(str(git_dir), False), (str(common), False),
                                                     (self._branches, True)}
                             if not d.startswith(self._root_prefix)]

        self._cond = threading.Condition()
        self._pending = _Pending()
        self._in_flight = 0  # size of the batch apply is working on; 0 = apply idle
        self._stopping = False
        self._flush_on_stop = False
        self._batches = 0
        self._events = 0
        self._errors = 0
        self._ended: str | None = None
        self._last_applied_at: float | None = None
        self._last_batch_size = 0
        self._observer: Observer | None = None
        self._worker: threading.Thread | None = None

    # ------------------------------------------------------------------ life cycle

    def start(self) -> Watcher:
        """Start the observer and the apply worker; a watcher starts once."""
        if self._worker is not None:
            raise RuntimeError(f"watcher on {self.root} was already started; create a new Watcher")
        if not self.root.is_dir():
            raise NotADirectoryError(f"cannot watch {self.root}: not a folder; pass the workspace root")
        self._worker = threading.Thread(target=self._run, name="codeahead-watch-apply", daemon=True)
        self._worker.start()
        observer = Observer()
        observer.daemon = True
        try:
            forward = _Forward(self._on_event)
            observer.schedule(forward, str(self.root), recursive=True, event_filter=_EVENT_FILTER)
            observer.start()
        except OSError as exc:
            self._halt_worker(flush=False)
            raise OSError(
                f"cannot watch {self.root}: {exc}; check the folder exists and "
                "the inotify watch limit (sysctl fs.inotify.max_user_watches)"
            ) from exc
        for folder, recursive in sorted(self._git_watches):
            try:
                observer.schedule(forward, folder, recursive=recursive, event_filter=_EVENT_FILTER)
            except OSError as exc:  # the files still index; only HEAD moves go unseen until a restart
                logger.warning("codeahead watcher: cannot watch %s for git HEAD moves: %s", folder, exc)
        self._observer = observer
        return self

    def stop(self, timeout: float = _DEFAULT_STOP_TIMEOUT, *, flush: bool = False) -> bool:
        """Stop watching; with ``flush`` apply what is pending first. True if all threads ended in time."""
        deadline = time.monotonic() + timeout
        if self._observer is not None:
            self._observer.stop()
            self._observer.join(timeout)
        self._halt_worker(flush=flush)
        if self._worker is not None:
            self._worker.join(max(0.0, deadline - time.monotonic()))
            return not self._worker.is_alive() and not (self._observer and self._observer.is_alive())
        return True

    def __enter__(self) -> Watcher:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # ------------------------------------------------------------------ status

    def pending(self) -> int:
        """Changes seen but not yet applied (including the batch apply is working on)."""
        with self._cond:
            return self._pending.size() + self._in_flight

    def stats(self) -> dict:
        """Counters for the server's freshness report."""
        with self._cond:
            return {
                "batches": self._batches,
                "events": self._events,
                "errors": self._errors,
                "last_applied_at": self._last_applied_at,
                "last_batch_size": self._last_batch_size,
                "pending": self._pending.size() + self._in_flight,
            }

    def wait_idle(self, timeout: float) -> bool:
        """Block until nothing is pending and apply is not running; False on timeout.

        Events still inside the OS/watchdog queues are not seen yet: after writing
        files, first wait for them to be pending (or applied), then for idleness.
        """
        with self._cond:
            return self._cond.wait_for(
                lambda: self._pending.first_at is None and not self._in_flight, timeout
            )

    # ------------------------------------------------------------------ events (observer thread)

    def _on_event(self, event: FileSystemEvent) -> None:
        """Filter one watchdog event and merge it into the pending batch."""
        if isinstance(event, EventsLostEvent):
            logger.warning("codeahead watcher: the file system dropped change events (its queue overflowed); "
                           "the next pass compares every file with the index")
            with self._cond:
                self._pending.rescan = True
                self._mark(self._pending)
            return
        try:
            gone, came = _endpoints(event)
            gone_rel = self._relevant(gone, event.is_directory)
            came_rel = self._relevant(came, event.is_directory)
        except Exception as exc:  # noqa: BLE001 - a user is_ignored must not kill the observer
            self._report(exc)
            return
        refs = not event.is_directory and (self._moves_head(gone) or self._moves_head(came))
        if gone_rel is None and came_rel is None and not refs:
            return
        with self._cond:
            p = self._pending
            p.refs_changed |= refs
            if event.is_directory:
                if gone_rel is not None:
                    p.deleted_dirs.add(gone_rel)
                if came_rel is not None:
                    p.dirs_to_scan.add(came_rel)
            else:
                p.files.update(r for r in (gone_rel, came_rel) if r is not None)
            self._mark(p)

    def _mark(self, p: _Pending) -> None:
        """Under the lock: one more event in the pending batch (the first one wakes the worker)."""
        now = time.monotonic()
        p.events += 1
        p.last_at = now
        if p.first_at is None:
            p.first_at = now
            self._cond.notify_all()

    def _relevant(self, path: str, is_dir: bool) -> str | None:
        """The root-relative POSIX path if this path's events matter, else None."""
        if not path.startswith(self._root_prefix) or self._is_self(path):
            return None
        rel = path[len(self._root_prefix) :].replace(os.sep, "/")
        if not is_dir and not self._counts(rel):
            return None
        return None if self._ignored(rel, is_dir) else rel

    def _moves_head(self, path: str) -> bool:
        """True for a write of the workspace's HEAD, packed refs or a branch ref."""
        return path in self._head_files or (
            path.startswith(self._branches + os.sep) and not path.endswith(".lock"))

    def _is_self(self, path: str) -> bool:
        """True for the index's own files (database and its sidecars, or a whole folder)."""
        for own in self._self_paths:
            if path.startswith(own + os.sep) or any(path == own + s for s in _DB_SIDECARS):
                return True
        return False

    def _counts(self, rel: str) -> bool:
        """True for files the index reads: source suffixes and ignore files."""
        name = rel.rsplit("/", 1)[-1]
        return name in IGNORE_FILE_NAMES or name.endswith(self._suffixes)

    def _ignored(self, rel: str, is_dir: bool) -> bool:
        """Default excludes, then the caller's rules on every enclosing folder and the path."""
        parts = rel.split("/")
        if _IGNORED_DIR_NAMES.intersection(parts) or is_editor_droppings(parts[-1]):
            return True
        if self._is_ignored is None:
            return False
        for i in range(1, len(parts)):
            if self._is_ignored("/".join(parts[:i]), True):
                return True
        return self._is_ignored(rel, is_dir)

    # ------------------------------------------------------------------ batches (worker thread)

    @property
    def ended(self) -> str | None:
        """Why the watcher stopped by itself (see ``WatchEnded``), or None."""
        return self._ended

    def _run(self) -> None:
        """Worker loop: wait for a due batch, build it from the disk, apply it."""
        while True:
            with self._cond:
                taken = self._take_due()
                if taken is None or self._ended is not None:
                    return
                self._in_flight = max(taken.size(), 1)
            try:
                self._apply_one(taken)
            finally:
                with self._cond:
                    self._in_flight = 0
                    self._cond.notify_all()

    def _take_due(self) -> _Pending | None:
        """Under the lock: wait until the pending batch is due and take it; None to exit."""
        while True:
            p = self._pending
            if self._stopping and not (self._flush_on_stop and p.first_at is not None):
                return None
            if p.first_at is None:
                self._cond.wait()
                continue
            due = min(p.last_at + self._debounce, p.first_at + self._max_delay)
            remaining = due - time.monotonic()
            if remaining > 0 and not self._stopping:
                self._cond.wait(remaining)
                continue
            self._pending = _Pending()
            return p

    def _apply_one(self, taken: _Pending) -> None:
        """Classify the taken paths against the disk and call apply; errors go to on_error."""
        size = 0
        try:
            batch = self._build(taken)
            size = len(batch)
            if size or batch.refs_changed:
                self._apply(batch)
        except WatchEnded as exc:
            logger.error("codeahead watcher stopped: %s", exc)
            self._ended = str(exc)
            if self._observer is not None:
                self._observer.stop()
        except Exception as exc:  # noqa: BLE001 - the watcher outlives a failing consumer
            self._report(exc)
        with self._cond:
            self._events += taken.events
            if size:  # a batch that netted out to nothing was never handed to apply
                self._batches += 1
                self._last_applied_at = time.time()
                self._last_batch_size = size

    def _build(self, taken: _Pending) -> ChangeBatch:
        """The batch as the disk shows it now (robust to event order)."""
        changed: set[str] = set()
        deleted: set[str] = set()
        ignore_files: set[str] = set()
        scanned = (rel for d in _outermost(taken.dirs_to_scan) for rel in self._scan(d))
        for rel in (*taken.files, *scanned):
            if rel.rsplit("/", 1)[-1] in IGNORE_FILE_NAMES:
                ignore_files.add(rel)
            elif os.path.isfile(self._abs(rel)):
                changed.add(rel)
            else:
                deleted.add(rel)
        return ChangeBatch(
            changed=frozenset(changed),
            deleted=frozenset(deleted),
            deleted_dirs=frozenset(_outermost(taken.deleted_dirs)),
            ignore_files_changed=frozenset(ignore_files),
            events=taken.events,
            first_event_at=taken.first_at or 0.0,
            flushed_at=time.monotonic(),
            refs_changed=taken.refs_changed,
            rescan=taken.rescan,
        )

    def _scan(self, rel_dir: str) -> Iterator[str]:
        """Relevant files below a created or moved-in folder (symlinked folders not followed)."""
        stack = [rel_dir]
        while stack:
            current = stack.pop()
            try:
                entries = list(os.scandir(self._abs(current)))
            except OSError:  # vanished or unreadable since the event: nothing to report
                continue
            for entry in entries:
                rel = f"{current}/{entry.name}"
                is_dir = entry.is_dir(follow_symlinks=False)
                if self._relevant(entry.path, is_dir) is None:
                    continue
                if is_dir:
                    stack.append(rel)
                else:
                    yield rel

    # ------------------------------------------------------------------ helpers

    def _abs(self, rel: str) -> str:
        return self._root_prefix + rel.replace("/", os.sep)

    def _halt_worker(self, *, flush: bool) -> None:
        with self._cond:
            self._stopping = True
            self._flush_on_stop = flush
            self._cond.notify_all()

    def _report(self, exc: BaseException) -> None:
        """Count an error and send it to on_error; a failing handler is logged, never raised."""
        with self._cond:
            self._errors += 1
        try:
            self._on_error(exc)
        except Exception:  # noqa: BLE001
            logger.exception("codeahead watcher: on_error handler failed")


def _endpoints(event: FileSystemEvent) -> tuple[str, str]:
    """(path that went away, path that appeared) for an event; "" where none."""
    src = os.fsdecode(event.src_path)
    if event.event_type == "moved":
        return src, os.fsdecode(event.dest_path)
    if event.event_type == "deleted":
        return src, ""
    if event.is_directory and event.event_type != "created":
        return "", ""  # folder modified: its files report for themselves
    return "", src


def _log_error(exc: BaseException) -> None:
    """Default on_error: log with traceback to stderr (via logging)."""
    logger.error("codeahead watcher: applying a change batch failed: %s", exc, exc_info=exc)
