"""The watcher against a real watchdog observer on a temporary folder."""

from __future__ import annotations

import logging
import os
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from conftest import git, wait_until
from indexer.watch import ChangeBatch, Watcher, is_editor_droppings

# Generous: the machine is shared, events may take a while to arrive.
WAIT = 10.0


class Recorder:
    """An apply callback that records batches and models a consumer's file set."""

    def __init__(self, block: threading.Event | None = None, fail_first: int = 0) -> None:
        self.batches: list[ChangeBatch] = []
        self.applied_at: list[float] = []
        self.files: set[str] = set()  # what an index fed by these batches would hold
        self.started = threading.Event()
        self._block = block
        self._fail_first = fail_first
        self._cond = threading.Condition()

    def __call__(self, batch: ChangeBatch) -> None:
        self.started.set()
        if self._block is not None:
            assert self._block.wait(WAIT), "test never released the slow apply"
        with self._cond:
            self.batches.append(batch)
            self.applied_at.append(time.monotonic())
            if len(self.batches) <= self._fail_first:
                self._cond.notify_all()
                raise RuntimeError(f"apply failure #{len(self.batches)}")
            self.files = {
                f for f in self.files if not any(f.startswith(d + "/") for d in batch.deleted_dirs)
            }
            self.files -= batch.deleted
            self.files |= batch.changed
            self._cond.notify_all()

    def wait_for(self, pred: Callable[[], bool], timeout: float = WAIT) -> bool:
        with self._cond:
            return self._cond.wait_for(pred, timeout)

    def seen(self) -> set[str]:
        """Every path any batch mentioned, in any field."""
        out: set[str] = set()
        for b in self.batches:
            out |= b.changed | b.deleted | b.deleted_dirs | b.ignore_files_changed
        return out


@pytest.fixture
def watch(tmp_path: Path) -> Iterator[Callable[..., tuple[Watcher, Recorder]]]:
    """Factory: a started watcher on tmp_path with a Recorder; stopped at teardown."""
    started: list[Watcher] = []

    def make(recorder: Recorder | None = None, **kw) -> tuple[Watcher, Recorder]:
        rec = recorder or Recorder()
        w = Watcher(tmp_path, rec, **kw).start()
        started.append(w)
        return w, rec

    yield make
    for w in started:
        w.stop(timeout=WAIT)


def test_file_create_modify_delete(tmp_path, watch):
    w, rec = watch()
    (tmp_path / "a.py").write_text("x = 1\n")
    assert rec.wait_for(lambda: "a.py" in rec.files)
    n = len(rec.batches)
    (tmp_path / "a.py").write_text("x = 2\n")
    assert rec.wait_for(lambda: len(rec.batches) > n)
    assert rec.batches[-1].changed == {"a.py"} and not rec.batches[-1].deleted
    (tmp_path / "a.py").unlink()
    assert rec.wait_for(lambda: "a.py" not in rec.files)
    assert rec.batches[-1].deleted == {"a.py"} and not rec.batches[-1].changed
    assert w.wait_idle(WAIT) and w.pending() == 0
    stats = w.stats()
    assert stats["batches"] == len(rec.batches) and stats["events"] >= 3
    assert stats["last_applied_at"] == pytest.approx(time.time(), abs=WAIT)


def test_file_move_is_delete_plus_create(tmp_path, watch):
    (tmp_path / "old.py").write_text("")
    w, rec = watch()
    os.rename(tmp_path / "old.py", tmp_path / "new.py")
    assert rec.wait_for(lambda: "new.py" in rec.files)
    assert rec.wait_for(lambda: "old.py" in rec.seen())
    assert any("old.py" in b.deleted for b in rec.batches)
    assert rec.files == {"new.py"}


def test_repeated_changes_coalesce_and_net_effect_comes_from_disk(tmp_path, watch):
    w, rec = watch(debounce=0.6, max_delay=5.0)
    for i in range(5):
        (tmp_path / "a.py").write_text(f"x = {i}\n")
    (tmp_path / "gone.py").write_text("")
    (tmp_path / "gone.py").unlink()
    assert rec.wait_for(lambda: {"a.py", "gone.py"} <= rec.seen())
    assert len(rec.batches) == 1
    batch = rec.batches[0]
    assert batch.changed == {"a.py"} and batch.deleted == {"gone.py"}
    assert batch.events >= 3  # the kernel may merge repeated identical events
    assert batch.flushed_at - batch.first_event_at >= 0.6


def test_folder_create_delete(tmp_path, watch):
    w, rec = watch()
    (tmp_path / "pkg" / "sub").mkdir(parents=True)
    (tmp_path / "pkg" / "__init__.py").write_text("")
    (tmp_path / "pkg" / "sub" / "m.py").write_text("")
    assert rec.wait_for(lambda: rec.files == {"pkg/__init__.py", "pkg/sub/m.py"})
    shutil.rmtree(tmp_path / "pkg")
    assert rec.wait_for(lambda: not rec.files)
    assert rec.wait_for(lambda: any("pkg" in b.deleted_dirs for b in rec.batches))
    # The innermost folder is covered by its deleted parent, never reported alone.
    assert not any("pkg/sub" in b.deleted_dirs for b in rec.batches if "pkg" in b.deleted_dirs)


def test_folder_move_reports_destination_files_and_source_prefix(tmp_path, watch):
    (tmp_path / "src" / "lib" / "deep").mkdir(parents=True)
    for rel in ("lib/a.py", "lib/deep/b.py", "lib/notes.txt"):
        (tmp_path / "src" / rel).write_text("")
    w, rec = watch()
    os.rename(tmp_path / "src" / "lib", tmp_path / "moved")
    assert rec.wait_for(lambda: {"moved/a.py", "moved/deep/b.py"} <= rec.files)
    assert rec.wait_for(lambda: any("src/lib" in b.deleted_dirs for b in rec.batches))
    assert w.wait_idle(WAIT)
    changed = set().union(*(b.changed for b in rec.batches))
    assert changed == {"moved/a.py", "moved/deep/b.py"}  # notes.txt: not a source suffix


def test_folder_moved_in_from_outside_is_walked(tmp_path, watch):
    outside = tmp_path / "outside"
    (outside / "pkg" / "inner").mkdir(parents=True)
    (outside / "pkg" / "inner" / "x.py").write_text("")
    root = tmp_path / "root"
    root.mkdir()
    rec = Recorder()
    w = Watcher(root, rec).start()
    try:
        os.rename(outside / "pkg", root / "pkg")
        assert rec.wait_for(lambda: rec.files == {"pkg/inner/x.py"})
    finally:
        assert w.stop(WAIT)


def test_ignored_paths_never_reach_apply(tmp_path, watch):
    for d in ("build", ".git/objects", ".codeahead", "vendor/pkg"):
        (tmp_path / d).mkdir(parents=True)
    db = tmp_path / "data" / "index.db"
    db.parent.mkdir()

    def is_ignored(rel: str, is_dir: bool) -> bool:
        return rel in {"build", "vendor"} or rel.startswith("gen_")

    w, rec = watch(is_ignored=is_ignored, self_paths=[tmp_path / ".codeahead", db])
    noise = [
        "build/out.py", "vendor/pkg/lib.py", "gen_models.py", ".git/objects/x.py", ".git/HEAD",
        ".codeahead/index.db", ".codeahead/index.db-wal", ".codeahead/cache.py",
        "data/index.db", "data/index.db-wal", "data/index.db-shm",
        ".a.py.swp", ".a.py.swo", "a.py~", ".#a.py", "#a.py#", "4913", "a.py.tmp", "README.md",
    ]
    for rel in noise:
        (tmp_path / rel).write_text("noise")
    (tmp_path / "build" / "newdir").mkdir()
    (tmp_path / "a.py.tmp").unlink()
    (tmp_path / "sentinel.py").write_text("")  # events arrive in order: this one comes last
    assert rec.wait_for(lambda: "sentinel.py" in rec.seen())
    assert w.wait_idle(WAIT)
    assert rec.seen() == {"sentinel.py"}


def test_editor_droppings_names():
    for name in (".a.py.swp", "a.py~", ".#a.py", "#a.py#", "4913", "x.tmp"):
        assert is_editor_droppings(name), name
    for name in ("a.py", "#", "test_4913.py", "tmp.py"):
        assert not is_editor_droppings(name), name


def test_ignore_files_reported_apart(tmp_path, watch):
    (tmp_path / "sub").mkdir()
    w, rec = watch()
    (tmp_path / ".gitignore").write_text("build/\n")
    (tmp_path / "sub" / ".codeaheadignore").write_text("*.pyi\n")
    assert rec.wait_for(lambda: {".gitignore", "sub/.codeaheadignore"} <= rec.seen())
    assert all(not b.changed and not b.deleted for b in rec.batches)
    (tmp_path / ".gitignore").unlink()
    assert rec.wait_for(lambda: ".gitignore" in rec.batches[-1].ignore_files_changed)


def test_burst_of_500_writes_gives_few_batches(tmp_path, watch):
    w, rec = watch()
    expected = set()
    for i in range(500):
        (tmp_path / f"m{i:03}.py").write_text(f"v = {i}\n")
        expected.add(f"m{i:03}.py")
    assert rec.wait_for(lambda: rec.files == expected)
    assert w.wait_idle(WAIT)
    assert len(rec.batches) <= 5
    assert sum(b.events for b in rec.batches) >= 500


def test_max_delay_bounds_hold_time_under_continuous_stream(tmp_path, watch):
    # Writes every 50 ms never leave a 300 ms quiet gap: only max_delay can close a batch.
    w, rec = watch(debounce=0.3, max_delay=0.5)
    end = time.monotonic() + 1.6
    i = 0
    while time.monotonic() < end:
        (tmp_path / f"s{i}.py").write_text("")
        i += 1
        time.sleep(0.05)
    assert rec.wait_for(lambda: len(rec.files) == i)
    assert rec.applied_at[0] < end, "no batch was applied while the stream ran"
    assert len(rec.batches) >= 2
    for b in rec.batches:
        assert b.flushed_at - b.first_event_at < 0.5 + 0.3  # scheduling slack on a busy machine


def test_apply_exceptions_do_not_kill_the_watcher(tmp_path, watch):
    errors: list[BaseException] = []
    w, rec = watch(Recorder(fail_first=1), on_error=errors.append)
    (tmp_path / "a.py").write_text("")
    assert rec.wait_for(lambda: len(rec.batches) == 1)
    assert w.wait_idle(WAIT)
    assert len(errors) == 1 and "apply failure #1" in str(errors[0])
    (tmp_path / "b.py").write_text("")
    assert rec.wait_for(lambda: "b.py" in rec.files)
    assert w.stats()["errors"] == 1


def test_default_on_error_logs(tmp_path, watch, caplog):
    w, rec = watch(Recorder(fail_first=1))
    with caplog.at_level(logging.ERROR, logger="indexer.watch"):
        (tmp_path / "a.py").write_text("")
        assert rec.wait_for(lambda: len(rec.batches) == 1)
        assert w.wait_idle(WAIT)
    assert any("apply failure #1" in r.getMessage() for r in caplog.records)


def test_pending_counts_changes_arriving_during_a_slow_apply(tmp_path, watch):
    release = threading.Event()
    w, rec = watch(Recorder(block=release))
    (tmp_path / "a.py").write_text("")
    assert rec.started.wait(WAIT)
    (tmp_path / "b.py").write_text("")
    (tmp_path / "c.py").write_text("")
    # One change in flight plus two waiting for the next batch.
    assert wait_until(lambda: w.pending() >= 3)
    assert not w.wait_idle(0.1)
    assert rec.batches == []  # apply is still blocked, never run concurrently
    release.set()
    assert rec.wait_for(lambda: rec.files == {"a.py", "b.py", "c.py"})
    assert w.wait_idle(WAIT) and w.pending() == 0
    assert rec.batches[0].changed == {"a.py"}
    assert {"b.py", "c.py"} <= rec.batches[1].changed


def test_stop_with_flush_applies_pending_work(tmp_path, watch):
    rec = Recorder()
    w = Watcher(tmp_path, rec, debounce=30, max_delay=60).start()
    (tmp_path / "a.py").write_text("")
    assert wait_until(lambda: w.pending() == 1)
    t0 = time.monotonic()
    assert w.stop(WAIT, flush=True)
    assert time.monotonic() - t0 < WAIT / 2
    assert rec.files == {"a.py"} and w.pending() == 0


def test_stop_without_flush_drops_pending_work(tmp_path):
    rec = Recorder()
    with Watcher(tmp_path, rec, debounce=30, max_delay=60) as w:
        (tmp_path / "a.py").write_text("")
        assert wait_until(lambda: w.pending() == 1)
    assert rec.batches == []
    with pytest.raises(RuntimeError, match="already started"):
        w.start()


def test_bad_arguments_fail_with_a_message(tmp_path):
    with pytest.raises(ValueError, match="debounce"):
        Watcher(tmp_path, Recorder(), debounce=-1)
    with pytest.raises(NotADirectoryError, match="not a folder"):
        Watcher(tmp_path / "missing", Recorder()).start()


def test_failing_ignore_rule_is_reported_and_watching_goes_on(tmp_path, watch):
    errors: list[BaseException] = []

    def is_ignored(rel: str, is_dir: bool) -> bool:
        if rel == "boom.py":
            raise ValueError("bad rule")
        return False

    w, rec = watch(is_ignored=is_ignored, on_error=errors.append)
    (tmp_path / "boom.py").write_text("")
    (tmp_path / "ok.py").write_text("")
    assert rec.wait_for(lambda: "ok.py" in rec.files)
    assert "boom.py" not in rec.seen()
    assert errors and all("bad rule" in str(e) for e in errors)
    assert w.stats()["errors"] == len(errors)


def test_a_commit_of_saved_files_reports_only_that_refs_moved(tmp_path, watch):
    """A commit of files already saved changes none the index reads, but it moves HEAD's branch (git writes a
    lock file and renames it over the ref); a checkout rewrites HEAD. Both reach apply as ``refs_changed``."""
    git(tmp_path, "init", "-q")
    (tmp_path / "a.py").write_text("x = 1\n")
    git(tmp_path, "add", "-A")
    git(tmp_path, "commit", "-q", "-m", "first")
    w, rec = watch()
    (tmp_path / "a.py").write_text("x = 2\n")
    assert rec.wait_for(lambda: any("a.py" in b.changed for b in rec.batches))
    assert w.wait_idle(WAIT)
    n = len(rec.batches)
    git(tmp_path, "commit", "-q", "-am", "second")
    assert rec.wait_for(lambda: any(b.refs_changed for b in rec.batches[n:]))
    assert w.wait_idle(WAIT)
    later = rec.batches[n:]
    assert all(len(b) == 0 for b in later) and rec.files == {"a.py"}
    assert w.stats()["batches"] == n  # a moved ref is not an index batch
    n = len(rec.batches)
    git(tmp_path, "checkout", "-q", "-b", "topic")
    assert rec.wait_for(lambda: any(b.refs_changed for b in rec.batches[n:]))
    (tmp_path / "b.py").write_text("")  # a saved file still arrives as a change, and moves nothing
    assert rec.wait_for(lambda: any("b.py" in b.changed for b in rec.batches))
    assert not next(b for b in rec.batches if "b.py" in b.changed).refs_changed


@pytest.mark.parametrize("layout", ["subfolder", "worktree"])
def test_head_moves_are_seen_where_git_keeps_them_outside_the_root(tmp_path, layout):
    """A workspace that is a folder inside a larger repository, or a linked work tree, has its HEAD and
    branches outside its root: the watcher is told where (``git.git_dirs``) and watches there too."""
    from indexer import git as gitcmd

    repo = tmp_path / "repo"
    (repo / "pkg").mkdir(parents=True)
    (repo / "pkg" / "a.py").write_text("x = 1\n")
    git(repo, "init", "-q")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "first")
    if layout == "subfolder":
        root = repo / "pkg"
    else:
        root = tmp_path / "linked"
        git(repo, "worktree", "add", "-q", "-b", "topic", str(root))
    git_dir, common = gitcmd.git_dirs(root)
    assert not str(git_dir).startswith(str(root)) and common == repo / ".git"
    rec = Recorder()
    w = Watcher(root, rec, git_dir=git_dir, git_common_dir=common).start()
    try:
        a = root / "a.py" if layout == "subfolder" else root / "pkg" / "a.py"
        a.write_text("x = 2\n")
        assert rec.wait_for(lambda: any(b.changed for b in rec.batches))
        assert w.wait_idle(WAIT)
        assert not any(b.refs_changed for b in rec.batches)
        n = len(rec.batches)
        git(root, "commit", "-q", "-am", "second")
        assert rec.wait_for(lambda: any(b.refs_changed for b in rec.batches[n:]))
        assert w.wait_idle(WAIT)
        assert all(len(b) == 0 for b in rec.batches[n:])
    finally:
        w.stop(timeout=WAIT)
