"""Workspace walk on real temporary folders: ignore rules, skip reasons, symlinks."""

from __future__ import annotations

import os
from pathlib import Path

import pathspec
import pytest

from conftest import write_tree
from indexer.types import SkipReason, Skipped, SourceFile
from indexer.walk import (
    UTF8_PROBE_BYTES,
    IgnoreRules,
    _any_pattern_regex,
    _examine_file,
    _IgnoreFile,
    read_source,
    walk,
)


def write(root: Path, rel: str, data: str | bytes = "x = 1\n") -> Path:
    """Create a file (and its folders) under ``root``."""
    write_tree(root, {rel: data})
    return root / rel


def paths(result) -> list[str]:
    return [f.path for f in result.files]


def skips(result) -> dict[str, tuple[SkipReason, str]]:
    return {s.path: (s.reason, s.detail) for s in result.skipped}


@pytest.fixture()
def nested(tmp_path: Path) -> Path:
    """A tree with root and nested ignore files exercising anchoring, negation, dir-only."""
    write(tmp_path, ".gitignore", "# generated code\n*.gen.py\n/top_only.py\nlogs/\n")
    write(tmp_path, "pkg/.gitignore", "/local.py\n!keep.gen.py\nsub/deep.py\n")
    for rel in [
        "top_only.py", "pkg/top_only.py", "a.gen.py", "pkg/keep.gen.py", "pkg/other.gen.py",
        "local.py", "pkg/local.py", "pkg/sub/local.py", "pkg/sub/deep.py", "pkg/deep.py",
        "logs/run.py", "pkg/logs/run.py", "pkg/stub.pyi", "README.md", "pkg/data.txt",
    ]:
        write(tmp_path, rel)
    return tmp_path


def test_nested_gitignore_anchoring_negation_and_dir_only(nested: Path) -> None:
    result = walk(nested)
    assert paths(result) == [
        "local.py", "pkg/deep.py", "pkg/keep.gen.py", "pkg/stub.pyi", "pkg/sub/local.py",
        "pkg/top_only.py",
    ]
    assert skips(result) == {
        "a.gen.py": (SkipReason.IGNORED, ".gitignore"),
        "logs": (SkipReason.IGNORED, ".gitignore"),
        "pkg/local.py": (SkipReason.IGNORED, "pkg/.gitignore"),
        "pkg/logs": (SkipReason.IGNORED, ".gitignore"),
        "pkg/other.gen.py": (SkipReason.IGNORED, ".gitignore"),
        "pkg/sub/deep.py": (SkipReason.IGNORED, "pkg/.gitignore"),
        "top_only.py": (SkipReason.IGNORED, ".gitignore"),
    }
    rules = IgnoreRules(nested)
    assert rules.is_ignored("pkg/logs", is_dir=True)
    assert not rules.is_ignored("pkg/logs", is_dir=False)  # "logs/" names folders only


def test_source_files_carry_size_mtime_language(tmp_path: Path) -> None:
    path = write(tmp_path, "sub/m.py", "print('hi')\n")
    (found,) = walk(tmp_path).files
    st = path.stat()
    assert found == SourceFile("sub/m.py", st.st_size, st.st_mtime, "python")
    assert walk(tmp_path, languages=("rust",)).files == []


def test_codeaheadignore_adds_patterns_and_overrides_gitignore(nested: Path) -> None:
    write(nested, ".codeaheadignore", "pkg/deep.py\n")
    write(nested, "pkg/.codeaheadignore", "!local.py\n")
    result = walk(nested)
    assert "pkg/local.py" in paths(result)  # .gitignore beside it said no; .codeaheadignore wins
    assert skips(result)["pkg/deep.py"] == (SkipReason.IGNORED, ".codeaheadignore")


def test_default_excludes_are_pruned_and_reported(tmp_path: Path) -> None:
    for rel in [
        ".git/hooks/x.py", "node_modules/m/x.py", "pkg/__pycache__/x.py", "myenv/lib/x.py",
        "proj.egg-info/x.py", ".venv/x.py", "pkg/build/x.py", "src/ok.py",
    ]:
        write(tmp_path, rel)
    write(tmp_path, "myenv/pyvenv.cfg", "home = /usr/bin\n")
    result = walk(tmp_path)
    assert paths(result) == ["src/ok.py"]
    default = (SkipReason.IGNORED, "default")
    assert skips(result) == {
        d: default
        for d in [".git", ".venv", "myenv", "node_modules", "pkg/__pycache__", "pkg/build", "proj.egg-info"]
    }
    assert IgnoreRules(tmp_path).is_ignored("myenv/lib/x.py", is_dir=False)


def test_index_dir_inside_workspace_is_ignored(tmp_path: Path) -> None:
    write(tmp_path, ".codeahead/cache.py")
    write(tmp_path, "ok.py")
    result = walk(tmp_path, rules=IgnoreRules(tmp_path, index_dir=tmp_path / ".codeahead"))
    assert paths(result) == ["ok.py"]
    assert skips(result) == {".codeahead": (SkipReason.IGNORED, "index dir")}
    outside = IgnoreRules(tmp_path, index_dir=tmp_path.parent / "elsewhere")
    assert not outside.is_ignored(".codeahead/cache.py", is_dir=False)


def test_size_cap(tmp_path: Path) -> None:
    write(tmp_path, "big.py", "x" * 200)
    write(tmp_path, "small.py", "x" * 100)
    result = walk(tmp_path, max_bytes=100)
    assert paths(result) == ["small.py"]
    assert skips(result)["big.py"][0] is SkipReason.TOO_LARGE
    assert isinstance(read_source(tmp_path, "big.py", max_bytes=100), Skipped)
    assert read_source(tmp_path, "small.py", max_bytes=100) == b"x" * 100


def test_binary_file(tmp_path: Path) -> None:
    write(tmp_path, "blob.py", b"abc\x00def")
    assert paths(walk(tmp_path)) == ["blob.py"]  # stat only by default: content unseen
    assert skips(walk(tmp_path, check_content=True))["blob.py"][0] is SkipReason.BINARY
    got = read_source(tmp_path, "blob.py")
    assert isinstance(got, Skipped) and got.reason is SkipReason.BINARY


def test_not_utf8_file(tmp_path: Path) -> None:
    write(tmp_path, "latin.py", "s = 'caf\xe9'\n".encode("latin-1"))
    result = walk(tmp_path, check_content=True)
    assert result.files == []
    assert skips(result)["latin.py"][0] is SkipReason.NOT_UTF8
    got = read_source(tmp_path, "latin.py")
    assert isinstance(got, Skipped) and got.reason is SkipReason.NOT_UTF8


def test_a_file_in_the_encoding_its_coding_comment_declares_is_read_as_python_reads_it(tmp_path: Path) -> None:
    write(tmp_path, "latin.py", "# -*- coding: latin-1 -*-\ns = 'caf\xe9'\n".encode("latin-1"))
    write(tmp_path, "second.py", "#!/usr/bin/env python\n# vim: set fileencoding=cp1252 :\nx = '\u20ac'\n".encode("cp1252"))
    write(tmp_path, "late.py", "x = 1\n# coding: latin-1\ns = 'caf\xe9'\n".encode("latin-1"))  # too late: no cookie
    write(tmp_path, "lying.py", "# coding: ascii\ns = 'caf\xe9'\n".encode("latin-1"))
    result = walk(tmp_path, check_content=True)
    assert sorted(f.path for f in result.files) == ["latin.py", "second.py"]
    assert {p: reason for p, (reason, _) in skips(result).items()} == {"late.py": SkipReason.NOT_UTF8,
                                                                      "lying.py": SkipReason.NOT_UTF8}
    assert read_source(tmp_path, "latin.py") == "# -*- coding: latin-1 -*-\ns = 'caf\xe9'\n".encode("utf-8")
    assert read_source(tmp_path, "second.py").decode("utf-8").endswith("x = '\u20ac'\n")


def test_utf8_character_across_the_probe_boundary_is_text(tmp_path: Path) -> None:
    data = b"#" * (UTF8_PROBE_BYTES - 1) + "é".encode() + b"\nx = 1\n"
    write(tmp_path, "long.py", data)
    assert paths(walk(tmp_path, check_content=True)) == ["long.py"]
    assert read_source(tmp_path, "long.py") == data


def test_truncated_utf8_at_end_of_file_is_not_text(tmp_path: Path) -> None:
    write(tmp_path, "cut.py", b"x = 1\n# " + "é".encode()[:1])
    assert skips(walk(tmp_path, check_content=True))["cut.py"][0] is SkipReason.NOT_UTF8


def test_unreadable_file(tmp_path: Path) -> None:
    path = write(tmp_path, "secret.py")
    path.chmod(0)
    try:
        if os.geteuid() == 0 and os.access(path, os.R_OK):
            pytest.skip("running as root: chmod 000 does not stop reads")
        assert skips(walk(tmp_path, check_content=True))["secret.py"][0] is SkipReason.UNREADABLE
        got = read_source(tmp_path, "secret.py")
        assert isinstance(got, Skipped) and got.reason is SkipReason.UNREADABLE
    finally:
        path.chmod(0o644)


def test_symlinked_folders_loop_duplicate_outside_and_new(tmp_path: Path) -> None:
    root = tmp_path / "ws"
    write(root, "pkg/mod.py")
    write(root, "other/real.py")
    write(root, "node_modules/dep/lib.py")
    write(tmp_path, "outside/far.py")
    (root / "pkg/loop").symlink_to("..")  # its own parent: would recurse forever
    (root / "alias").symlink_to("pkg")  # already indexed under its own path
    (root / "zz_first").symlink_to("other")  # sorts after its target: still a duplicate
    (root / "far").symlink_to(tmp_path / "outside")
    (root / "vendored").symlink_to("node_modules/dep")  # target ignored, so never walked
    result = walk(root)
    assert paths(result) == ["other/real.py", "pkg/mod.py", "vendored/lib.py"]
    got = skips(result)
    assert got["pkg/loop"][0] is SkipReason.SYMLINK_LOOP
    assert got["alias"] == (SkipReason.IGNORED, "symlink to pkg")
    assert got["zz_first"] == (SkipReason.IGNORED, "symlink to other")
    assert got["far"] == (SkipReason.IGNORED, "outside workspace")


def test_symlinked_files_are_not_indexed(tmp_path: Path) -> None:
    root = tmp_path / "ws"
    write(root, "real.py")
    write(tmp_path, "outside.py")
    (root / "link.py").symlink_to("real.py")
    (root / "far.py").symlink_to(tmp_path / "outside.py")
    (root / "broken.py").symlink_to("missing.py")
    (root / "a.py").symlink_to("b.py")
    (root / "b.py").symlink_to("a.py")
    result = walk(root)
    assert paths(result) == ["real.py"]
    got = skips(result)
    assert got["link.py"] == (SkipReason.IGNORED, "symlink to real.py")
    assert got["far.py"] == (SkipReason.IGNORED, "outside workspace")
    assert got["broken.py"][0] is SkipReason.UNREADABLE
    assert got["a.py"][0] is got["b.py"][0] is SkipReason.SYMLINK_LOOP


def test_file_deleted_between_listing_and_stat_is_vanished(tmp_path: Path) -> None:
    path = write(tmp_path, "gone.py")
    listed = [e for e in os.scandir(tmp_path) if e.name == "gone.py"]
    path.unlink()
    got = _examine_file(listed[0].path, "gone.py", "python", 1_000_000, check_content=False)
    assert got == Skipped("gone.py", SkipReason.VANISHED, "deleted after it was listed")
    missing = read_source(tmp_path, "gone.py")
    assert isinstance(missing, Skipped) and missing.reason is SkipReason.VANISHED


def test_editor_swap_and_backup_files_are_ignored(tmp_path: Path) -> None:
    write(tmp_path, ".#mod.py")  # an Emacs lock file still ends in .py
    write(tmp_path, "mod.py")
    result = walk(tmp_path)
    assert paths(result) == ["mod.py"]
    assert skips(result) == {".#mod.py": (SkipReason.IGNORED, "editor file")}
    rules = IgnoreRules(tmp_path)
    for name in ["mod.py.swp", "mod.py.swo", "mod.py~", ".#mod.py", "#mod.py#", "x.tmp"]:
        assert rules.is_ignored(f"pkg/{name}", is_dir=False), name
    assert not rules.is_ignored("pkg/mod.py", is_dir=False)


def test_is_ignored_agrees_with_walk(nested: Path) -> None:
    write(nested, "node_modules/x/y.py")
    write(nested, ".codeaheadignore", "pkg/sub/\n")
    result = walk(nested)
    rules = IgnoreRules(nested)  # fresh: nothing cached by a walk
    for f in result.files:
        assert not rules.is_ignored(f.path, is_dir=False), f.path
    for s in result.skipped:
        is_dir = (nested / s.path).is_dir()
        assert rules.why_ignored(s.path, is_dir) == s.detail, s.path
    # Single paths below a pruned folder, never listed by the walk.
    assert rules.why_ignored("node_modules/x/y.py", is_dir=False) == "default"
    assert rules.why_ignored("pkg/sub/local.py", is_dir=False) == ".codeaheadignore"
    assert rules.why_ignored("logs/deeper/z.py", is_dir=False) == ".gitignore"


def test_invalidate_rereads_an_edited_ignore_file(nested: Path) -> None:
    rules = IgnoreRules(nested)
    assert not rules.is_ignored("pkg/deep.py", is_dir=False)
    write(nested, "pkg/.gitignore", "deep.py\n")
    assert not rules.is_ignored("pkg/deep.py", is_dir=False)  # parsed once, still cached
    rules.invalidate("pkg")
    assert rules.is_ignored("pkg/deep.py", is_dir=False)
    assert not rules.is_ignored("pkg/local.py", is_dir=False)  # the old "/local.py" is gone
    write(nested, ".gitignore", "")
    rules.invalidate("")
    assert not rules.is_ignored("a.gen.py", is_dir=False)


def test_quick_prefilter_agrees_with_pathspec() -> None:
    lines = ["*.gen.py", "/top.py", "a/**/b", "x?[ab].py", "build/", "!keep/", "docs/_build/",
             "**/cache", "\\#literal.py", "name with space.py", "[!z]*.pyi", "!important.gen.py"]
    spec = pathspec.GitIgnoreSpec.from_lines(lines)
    ignore_file = _IgnoreFile("", ".gitignore", spec, _any_pattern_regex(spec))
    assert ignore_file.any_match is not None
    candidates = ["top.py", "s/top.py", "a/b", "a/q/r/b", "xya.py", "xyc.py", "build", "s/build",
                  "keep", "docs/_build", "d/cache", "cache", "#literal.py", "name with space.py",
                  "m.pyi", "z.pyi", "important.gen.py", "other.gen.py", "plain.py"]
    for path in candidates:
        for is_dir in (False, True):
            expected = spec.check_file(path + "/" if is_dir else path).include
            assert ignore_file.verdict(path, is_dir) == expected, (path, is_dir)


def test_results_are_sorted_posix_and_counted(tmp_path: Path) -> None:
    for rel in ["b/z.py", "a/y.py", "a.py", "b/a.gen.py"]:
        write(tmp_path, rel)
    write(tmp_path, ".gitignore", "*.gen.py\n")
    result = walk(tmp_path)
    assert paths(result) == sorted(paths(result)) == ["a.py", "a/y.py", "b/z.py"]
    assert result.skipped_by_reason() == {"ignored": 1}


def test_walk_of_a_file_says_what_to_pass(tmp_path: Path) -> None:
    with pytest.raises(NotADirectoryError, match="workspace root"):
        walk(write(tmp_path, "m.py"))
