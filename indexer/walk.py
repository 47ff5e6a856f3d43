"""Workspace walk: which files the index should read, and why the others are left out.

``IgnoreRules`` answers for one path at a time (the file watcher needs that), and
``walk`` applies it to a whole tree with ``os.scandir``, pruning ignored folders
without descending. Every file left out is reported as a ``Skipped`` with its
reason, so ``codeahead status`` can list them; nothing here raises on a bad file.
"""

from __future__ import annotations

import codecs
import errno
import os
import re
import stat
from collections.abc import Container, Iterable
from dataclasses import dataclass
from pathlib import Path

import pathspec

from indexer.parse import language_of
from indexer.types import SkipReason, Skipped, SourceFile

#: Folder names never indexed (VCS metadata, virtualenvs, caches, build output, IDEs).
DEFAULT_EXCLUDED_DIRS = frozenset({
    ".git", ".hg", ".svn",
    ".venv", "venv", "env", ".env",
    "node_modules", "__pycache__", "build", "dist", ".tox", ".nox",
    ".mypy_cache", ".pytest_cache", ".ruff_cache", ".hypothesis",
    ".eggs", "site-packages", ".idea", ".vscode",
})
_EGG_INFO_SUFFIX = ".egg-info"
#: A folder holding this file is a virtualenv, whatever its name.
_VENV_MARKER = "pyvenv.cfg"
#: Ignore files read in every folder, lowest precedence first.
IGNORE_FILES = (".gitignore", ".codeaheadignore")
#: Editor swap/backup/temporary file names: suffixes, then prefix+suffix pairs.
_EDITOR_SUFFIXES = (".swp", ".swo", "~", ".tmp")
_EDITOR_PREFIX_SUFFIX = ((".#", ""), ("#", "#"))

#: Details of ``Skipped(reason=IGNORED)`` that are not an ignore file's path.
DEFAULT_DETAIL = "default"
EDITOR_DETAIL = "editor file"
INDEX_DIR_DETAIL = "index dir"
OUTSIDE_DETAIL = "outside workspace"
NOT_REGULAR_DETAIL = "not a regular file (a named pipe, socket or device)"

#: A NUL byte in this many leading bytes marks a file as binary (as git does).
BINARY_PROBE_BYTES = 8 * 1024
#: How many leading bytes must decode as UTF-8; the indexer decodes the rest itself.
UTF8_PROBE_BYTES = 64 * 1024
DEFAULT_MAX_BYTES = 1_000_000


def is_utf8_name(rel_path: str) -> bool:
    """Whether a path can be stored and shown: names that are not UTF-8 reach Python as lone surrogates,
    which SQLite (and JSON) cannot encode."""
    try:
        rel_path.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def shown_name(rel_path: str) -> str:
    """A path as it can be stored and shown: bytes that are not UTF-8 become U+FFFD."""
    return rel_path.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def bad_name(rel_path: str) -> Skipped:
    return Skipped(shown_name(rel_path), SkipReason.NOT_UTF8, "file or folder name is not UTF-8")


def _is_editor_file(name: str) -> bool:
    """Swap, backup and lock files editors leave next to the real file."""
    if name.endswith(_EDITOR_SUFFIXES):
        return True
    return any(
        len(name) > len(pre) + len(suf) and name.startswith(pre) and name.endswith(suf)
        for pre, suf in _EDITOR_PREFIX_SUFFIX
    )


def _parent_of(rel_path: str) -> str:
    """Folder part of a POSIX relative path, "" for the root."""
    cut = rel_path.rfind("/")
    return rel_path[:cut] if cut >= 0 else ""


def _join(rel_dir: str, name: str) -> str:
    """POSIX relative path of ``name`` inside ``rel_dir``."""
    return f"{rel_dir}/{name}" if rel_dir else name


def _is_within(rel_path: str, rel_dir: str) -> bool:
    """Whether ``rel_path`` is ``rel_dir`` or lies below it ("" is the root)."""
    return rel_dir == "" or rel_path == rel_dir or rel_path.startswith(rel_dir + "/")


_NAMED_GROUP = re.compile(r"\(\?P<\w+>")


def _any_pattern_regex(spec: pathspec.GitIgnoreSpec) -> re.Pattern[str] | None:
    """One regex matching wherever any pattern of ``spec`` does, or None if it cannot be built.

    pathspec tries its patterns one by one in Python; most paths match none, and a
    single alternation answers that in C (half the walk time on Django without it).
    """
    parts = [p.regex.pattern for p in spec.patterns if p.include is not None and p.regex is not None]
    if not parts:
        return None
    # Every pattern names the same group; renaming them away keeps the alternation valid.
    try:
        return re.compile("|".join(f"(?:{_NAMED_GROUP.sub('(?:', part)})" for part in parts))
    except re.error:
        return None


@dataclass(frozen=True, slots=True)
class _IgnoreFile:
    """The parsed patterns of one ignore file, matched relative to its own folder."""

    folder: str  # POSIX, relative to the workspace root; "" for the root
    source: str  # the ignore file's relative path, reported as the skip detail
    spec: pathspec.GitIgnoreSpec
    any_match: re.Pattern[str] | None  # quick "does any pattern match at all?"

    def verdict(self, rel_path: str, is_dir: bool) -> bool | None:
        """True ignored, False re-included by ``!``, None when no pattern matches."""
        sub = rel_path[len(self.folder) + 1:] if self.folder else rel_path
        # A trailing slash is what lets directory-only patterns ("build/") match.
        if is_dir:
            sub += "/"
        if self.any_match is not None and self.any_match.search(sub) is None:
            return None
        return self.spec.check_file(sub).include


class IgnoreRules:
    """Default excludes, nested .gitignore / .codeaheadignore files and the index dir."""

    def __init__(self, root: Path | str, *, index_dir: Path | str | None = None) -> None:
        self.root = os.path.abspath(root)
        self._index_rel = self._inside_rel(index_dir) if index_dir is not None else None
        self._own: dict[str, tuple[_IgnoreFile, ...]] = {}  # ignore files of one folder
        self._chains: dict[str, tuple[_IgnoreFile, ...]] = {}  # ... of a folder and its parents

    def _inside_rel(self, path: Path | str) -> str | None:
        """POSIX path of ``path`` relative to the root, None when it lies outside."""
        full = os.path.abspath(os.path.join(self.root, path))
        rel = os.path.relpath(full, self.root)
        if rel == os.pardir or rel.startswith(os.pardir + os.sep):
            return None
        return "" if rel == os.curdir else rel.replace(os.sep, "/")

    def invalidate(self, rel_dir: str) -> None:
        """Forget a folder's parsed ignore files, to reread them after one changed."""
        self._own.pop(rel_dir.strip("/"), None)
        self._chains.clear()  # every chain below rel_dir embeds the old patterns

    def is_ignored(self, rel_path: str, is_dir: bool) -> bool:
        """Whether a path (POSIX, relative to the root) is left out, its folders included."""
        return self.why_ignored(rel_path, is_dir) is not None

    def why_ignored(self, rel_path: str, is_dir: bool) -> str | None:
        """The skip detail of a path (e.g. "default", "src/.gitignore"), None if indexed."""
        parts = rel_path.strip("/").split("/")
        for depth in range(1, len(parts)):
            detail = self.entry_detail("/".join(parts[:depth]), True)
            if detail is not None:
                return detail
        return self.entry_detail("/".join(parts), is_dir)

    def entry_detail(self, rel_path: str, is_dir: bool, *, look_inside: bool = True) -> str | None:
        """Like ``why_ignored`` but trusts that no parent folder is ignored (the walk prunes).

        ``look_inside=False`` skips the virtualenv probe, for a caller that lists the folder anyway.
        """
        name = rel_path[rel_path.rfind("/") + 1:]
        if is_dir:
            if name in DEFAULT_EXCLUDED_DIRS or name.endswith(_EGG_INFO_SUFFIX):
                return DEFAULT_DETAIL
            if look_inside and os.path.isfile(os.path.join(self.root, rel_path, _VENV_MARKER)):
                return DEFAULT_DETAIL
        elif _is_editor_file(name):
            return EDITOR_DETAIL
        if self._index_rel is not None and _is_within(rel_path, self._index_rel):
            return INDEX_DIR_DETAIL
        # The deepest ignore file with a matching pattern decides, as in git.
        for ignore_file in reversed(self._chain(_parent_of(rel_path))):
            verdict = ignore_file.verdict(rel_path, is_dir)
            if verdict is not None:
                return ignore_file.source if verdict else None
        return None

    def _chain(self, rel_dir: str) -> tuple[_IgnoreFile, ...]:
        """Ignore files that apply inside ``rel_dir``, root first."""
        chain = self._chains.get(rel_dir)
        if chain is None:
            above = self._chain(_parent_of(rel_dir)) if rel_dir else ()
            chain = above + self.ignore_files_in(rel_dir)
            self._chains[rel_dir] = chain
        return chain

    def ignore_files_in(self, rel_dir: str, listing: Container[str] = IGNORE_FILES) -> tuple[_IgnoreFile, ...]:
        """Parse (once) the ignore files in ``rel_dir``; a folder listing spares opening absent ones."""
        own = self._own.get(rel_dir)
        if own is None:
            loaded = (self._load(rel_dir, name) for name in IGNORE_FILES if name in listing)
            own = tuple(f for f in loaded if f is not None)
            self._own[rel_dir] = own
        return own

    def _load(self, rel_dir: str, file_name: str) -> _IgnoreFile | None:
        """One ignore file, or None when it is absent, unreadable or empty."""
        source = _join(rel_dir, file_name)
        try:
            with open(os.path.join(self.root, source), encoding="utf-8", errors="replace") as f:
                lines = f.read().splitlines()
        except OSError:  # absent (the common case) or unreadable: no patterns from it
            return None
        spec = pathspec.GitIgnoreSpec.from_lines(lines)
        if not any(p.include is not None for p in spec.patterns):
            return None  # only comments and blank lines
        return _IgnoreFile(rel_dir, source, spec, _any_pattern_regex(spec))


@dataclass(frozen=True, slots=True)
class WalkResult:
    """Files to index and files left out, each sorted by path."""

    files: list[SourceFile]
    skipped: list[Skipped]

    def skipped_by_reason(self) -> dict[str, int]:
        """How many paths were left out for each reason, the shape ``IndexStats`` stores."""
        counts: dict[str, int] = {}
        for s in self.skipped:
            counts[s.reason.value] = counts.get(s.reason.value, 0) + 1
        return counts


def _os_error_detail(err: OSError) -> str:
    """One-line reason of an OS error, without the path (the Skipped carries it)."""
    return err.strerror or type(err).__name__


def _unlistable(rel_path: str, err: OSError) -> Skipped:
    """Why an entry the folder listing named cannot even be typed as file or folder."""
    if err.errno == errno.ELOOP:
        return Skipped(rel_path, SkipReason.SYMLINK_LOOP, "symlinks that point at each other")
    if isinstance(err, FileNotFoundError):
        return Skipped(rel_path, SkipReason.VANISHED, "deleted after it was listed")
    return Skipped(rel_path, SkipReason.UNREADABLE, _os_error_detail(err))


def _check_content(head: bytes, rel_path: str, complete: bool) -> Skipped | str | None:
    """BINARY or NOT_UTF8 for a file's leading bytes; None when they look like UTF-8 text, or the encoding
    another text declares in a PEP 263 comment (``# -*- coding: latin-1 -*-``), which Python reads it in."""
    if b"\0" in head[:BINARY_PROBE_BYTES]:
        return Skipped(rel_path, SkipReason.BINARY, "NUL byte in the first 8 KB")
    probe = head[:UTF8_PROBE_BYTES]
    whole_file = complete and len(probe) == len(head)
    try:
        # Not final unless the whole file is here: a character may straddle the cut.
        codecs.getincrementaldecoder("utf-8")().decode(probe, final=whole_file)
    except UnicodeDecodeError as err:
        encoding = _declared_encoding(head)
        if encoding is None:
            return Skipped(rel_path, SkipReason.NOT_UTF8, f"invalid UTF-8 at byte {err.start}")
        try:
            codecs.getincrementaldecoder(encoding)().decode(probe, final=whole_file)
        except UnicodeDecodeError as bad:
            return Skipped(rel_path, SkipReason.NOT_UTF8, f"invalid {encoding} (its coding comment) at byte {bad.start}")
        return encoding
    return None


#: PEP 263's coding comment, on the first line or on the second after a comment or blank first line.
_CODING = re.compile(rb"^[ \t\f]*#.*?coding[:=][ \t]*([-\w.]+)")


def _declared_encoding(head: bytes) -> str | None:
    """The encoding other than UTF-8 a file's coding comment declares, when Python knows it; else None."""
    for line in head.split(b"\n", 2)[:2]:
        found = _CODING.match(line)
        if found:
            try:
                name = codecs.lookup(found.group(1).decode("ascii")).name
            except (LookupError, UnicodeDecodeError):
                return None
            return None if name == "utf-8" else name
        if line.strip() and not line.lstrip().startswith(b"#"):
            return None  # code on the first line: a comment on the second declares nothing
    return None


def _read_checked(full: str, rel_path: str, max_bytes: int, limit: int) -> bytes | Skipped:
    """Read up to ``limit`` bytes of a file and validate them; the one place files are opened."""
    try:
        # Non-blocking: opening a FIFO named like a source file would wait for a writer forever.
        with os.fdopen(os.open(full, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0)), "rb") as f:
            st = os.fstat(f.fileno())
            if not stat.S_ISREG(st.st_mode):
                return Skipped(rel_path, SkipReason.UNREADABLE, NOT_REGULAR_DETAIL)
            size = st.st_size
            if size > max_bytes:
                return Skipped(rel_path, SkipReason.TOO_LARGE, f"{size} bytes > {max_bytes}")
            data = f.read(min(limit, max_bytes) + 1)
    except FileNotFoundError:
        return Skipped(rel_path, SkipReason.VANISHED, "deleted before it was read")
    except OSError as err:
        return Skipped(rel_path, SkipReason.UNREADABLE, _os_error_detail(err))
    if len(data) > max_bytes:  # grew since the fstat
        return Skipped(rel_path, SkipReason.TOO_LARGE, f"over {max_bytes} bytes")
    checked = _check_content(data, rel_path, complete=len(data) <= limit)
    if isinstance(checked, Skipped):
        return checked
    if checked is not None and len(data) <= limit:  # the whole text in its declared encoding: as UTF-8, lines kept
        try:
            return data.decode(checked).encode("utf-8")
        except UnicodeDecodeError as bad:
            return Skipped(rel_path, SkipReason.NOT_UTF8, f"invalid {checked} (its coding comment) at byte {bad.start}")
    return data


def read_source(root: Path | str, rel_path: str, max_bytes: int = DEFAULT_MAX_BYTES) -> bytes | Skipped:
    """A file's bytes if it is indexable text, else why not: read and validate in one go."""
    full = os.path.join(root, *rel_path.split("/"))
    return _read_checked(full, rel_path, max_bytes, limit=max_bytes)


def _examine_file(
    full: str, rel_path: str, language: str, max_bytes: int, check_content: bool
) -> SourceFile | Skipped:
    """Stat (and optionally read) one listed file: a SourceFile, or why it is left out."""
    try:
        st = os.stat(full)
    except FileNotFoundError:
        return Skipped(rel_path, SkipReason.VANISHED, "deleted after it was listed")
    except OSError as err:
        return Skipped(rel_path, SkipReason.UNREADABLE, _os_error_detail(err))
    if not stat.S_ISREG(st.st_mode):
        return Skipped(rel_path, SkipReason.UNREADABLE, NOT_REGULAR_DETAIL)
    if st.st_size > max_bytes:
        return Skipped(rel_path, SkipReason.TOO_LARGE, f"{st.st_size} bytes > {max_bytes}")
    if check_content:
        checked = _read_checked(full, rel_path, max_bytes, limit=UTF8_PROBE_BYTES)
        if isinstance(checked, Skipped):
            return checked
    return SourceFile(rel_path, st.st_size, st.st_mtime, language)


class _Walker:
    """One walk's state: results, real folders visited, symlinked folders still to decide."""

    def __init__(self, root: str, rules: IgnoreRules, languages: frozenset[str],
                 max_bytes: int, check_content: bool) -> None:
        self.root = root
        self.real_root = os.path.realpath(root)
        self.rules = rules
        self.languages = languages
        self.max_bytes = max_bytes
        self.check_content = check_content
        self.files: list[SourceFile] = []
        self.skipped: list[Skipped] = []
        self.visited: set[str] = set()  # real folders walked, relative to the real root
        self.linked_dirs: list[tuple[str, str, str]] = []  # (link path, full path, real parent)

    def run(self) -> WalkResult:
        """Walk the real tree, then the symlinked folders that add something new."""
        self._walk_dir("", self.root, "")
        # Linked folders wait until every real folder is known, so a link never
        # claims a folder that the walk would reach under its own path later.
        while self.linked_dirs:
            pending, self.linked_dirs = sorted(self.linked_dirs), []
            for rel, full, real_parent in pending:
                self._follow_link(rel, full, real_parent)
        self.files.sort(key=lambda f: f.path)
        self.skipped.sort(key=lambda s: s.path)
        return WalkResult(self.files, self.skipped)

    def _real_rel(self, full: str) -> str | None:
        return real_relative(self.real_root, full)

    def _walk_dir(self, rel_dir: str, full_dir: str, real_dir: str) -> None:
        """List one folder and recurse into the folders the rules keep."""
        try:
            with os.scandir(full_dir) as it:
                entries = list(it)
        except FileNotFoundError:
            self.skipped.append(Skipped(rel_dir, SkipReason.VANISHED, "folder deleted while walking"))
            return
        except OSError as err:
            self.skipped.append(Skipped(rel_dir, SkipReason.UNREADABLE, _os_error_detail(err)))
            return
        names = {e.name for e in entries}
        if rel_dir and _VENV_MARKER in names:  # the probe entry_detail(look_inside=False) left out
            self.skipped.append(Skipped(rel_dir, SkipReason.IGNORED, DEFAULT_DETAIL))
            return
        self.visited.add(real_dir)
        self.rules.ignore_files_in(rel_dir, names)
        for entry in entries:
            rel = _join(rel_dir, entry.name)
            if not is_utf8_name(entry.name):
                if language_of(entry.name) is not None or entry.is_dir():
                    self.skipped.append(bad_name(rel))
                continue
            try:
                is_link = entry.is_symlink()
                is_dir = entry.is_dir()  # follows links: a link to a folder counts as one
            except OSError as err:
                self.skipped.append(_unlistable(rel, err))
                continue
            if is_dir:
                self._on_dir(entry, rel, is_link, real_dir)
            else:
                self._on_file(entry, rel, is_link)

    def _on_dir(self, entry: os.DirEntry, rel: str, is_link: bool, real_parent: str) -> None:
        """Prune an ignored folder, queue a symlinked one, descend into the others."""
        detail = self.rules.entry_detail(rel, True, look_inside=False)
        if detail is not None:
            self.skipped.append(Skipped(rel, SkipReason.IGNORED, detail))
        elif is_link:
            self.linked_dirs.append((rel, entry.path, real_parent))
        else:
            self._walk_dir(rel, entry.path, _join(real_parent, entry.name))

    def _follow_link(self, rel: str, full: str, real_parent: str) -> None:
        """Walk a symlinked folder only if it leads inside the root to a folder not yet walked."""
        target = self._real_rel(full)
        if target is None:
            self.skipped.append(Skipped(rel, SkipReason.IGNORED, OUTSIDE_DETAIL))
        elif _is_within(real_parent, target):
            shown = target or "."
            self.skipped.append(Skipped(rel, SkipReason.SYMLINK_LOOP, f"symlink to its own parent {shown}"))
        elif target in self.visited:
            self.skipped.append(Skipped(rel, SkipReason.IGNORED, f"symlink to {target}"))
        else:
            self._walk_dir(rel, full, target)

    def _on_file(self, entry: os.DirEntry, rel: str, is_link: bool) -> None:
        """Keep a file of a wanted language unless the rules, a symlink or its content say no."""
        language = language_of(entry.name)
        if language is None or language not in self.languages:
            return  # other languages are neither indexed nor reported
        detail = self.rules.entry_detail(rel, False)
        if detail is not None:
            self.skipped.append(Skipped(rel, SkipReason.IGNORED, detail))
        elif is_link:
            self.skipped.append(self._linked_file(entry.path, rel))
        else:
            found = _examine_file(entry.path, rel, language, self.max_bytes, self.check_content)
            (self.files if isinstance(found, SourceFile) else self.skipped).append(found)

    def _linked_file(self, full: str, rel: str) -> Skipped:
        return linked_file(self.real_root, full, rel)


def real_relative(real_root: str, full: str) -> str | None:
    """Real path of ``full`` relative to ``real_root`` (itself real), None when it resolves outside."""
    real = os.path.realpath(full)
    if real == real_root:
        return ""
    if not real.startswith(real_root + os.sep):
        return None
    return real[len(real_root) + 1:].replace(os.sep, "/")


def linked_file(real_root: str, full: str, rel: str) -> Skipped:
    """Symlinked files are never indexed (the walk's rule, and a watcher batch's): an inside target is
    indexed under its own path, and an outside one not at all."""
    if not os.path.exists(full):
        return Skipped(rel, SkipReason.UNREADABLE, "broken symlink")
    target = real_relative(real_root, full)
    return Skipped(rel, SkipReason.IGNORED, OUTSIDE_DETAIL if target is None else f"symlink to {target}")


def walk(
    root: Path,
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
    languages: Iterable[str] = ("python",),
    rules: IgnoreRules | None = None,
    check_content: bool = False,
) -> WalkResult:
    """Files under ``root`` to index, and every file or folder left out with its reason."""
    root_str = os.path.abspath(root)
    if not os.path.isdir(root_str):
        raise NotADirectoryError(f"cannot walk {root_str}: not a folder; pass the workspace root")
    walker = _Walker(root_str, rules or IgnoreRules(root_str), frozenset(languages),
                     max_bytes, check_content)
    return walker.run()
