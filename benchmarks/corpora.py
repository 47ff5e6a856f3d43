"""Prepare the benchmark corpora (Django sdist, semble repos, SWE-bench mirrors) so every benchmark reads code from disk."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Iterable
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CORPORA = PROJECT_ROOT / "benchmarks" / ".corpora"
DEFAULT_BENCH = PROJECT_ROOT.parent / "shared" / "bench"
DEFAULT_MIRROR_ROOT = Path("/work/.mirror")
DEFAULT_TREES = DEFAULT_CORPORA / "trees"
DEFAULT_MIRRORS_FILE = DEFAULT_CORPORA / "mirrors.json"

DJANGO_SPEC = "django==5.2.*"
DJANGO_SDIST_GLOB = "django-5.2*.tar.gz"
# Fail fast on a machine without an index; one retry covers a flaky connection.
PIP_RETRIES = 1
DJANGO_DIRNAME = "django-5.2"
SEMBLE_DIRNAME = "semble"
CLONES_DIRNAME = "mirrors"
COMPLETE_MARKER = ".complete"
COMMIT_PREFIX_LEN = 12
# SWE-bench keeps fetchable copies of repositories too large to mirror directly (django/django).
SWEBENCH_OWNER = "swe-bench"
SWEBENCH_COPIES = frozenset({"django/django", "scikit-learn/scikit-learn", "matplotlib/matplotlib"})
CLONE_TIMEOUT_S = 1800
TARGETS = ("django", "semble", "swebench", "all")
# mkdtemp makes 0700 folders; a published tree should read like a normal checkout.
TREE_MODE = 0o755


class CorpusError(RuntimeError):
    """A corpus could not be prepared; the message says which and what to do next."""


def github_name(url: str) -> str:
    """Turn a clone URL into the `owner/name` key used by the benchmark data."""
    tail = url.rstrip("/").removesuffix(".git")
    owner, name = tail.split("/")[-2:]
    return f"{owner}/{name}"


def _is_git_dir(path: Path) -> bool:
    """Tell a bare git directory from anything else without running git."""
    return (path / "HEAD").is_file() and (path / "objects").is_dir()


def _load_mirror_map(mirrors_file: Path) -> dict[str, str]:
    """Read the repo -> git dir map; a missing or unreadable file is an empty map."""
    try:
        return json.loads(mirrors_file.read_text())
    except (OSError, ValueError):
        return {}


def record_mirror(repo: str, git_dir: Path, mirrors_file: Path = DEFAULT_MIRRORS_FILE) -> None:
    """Remember where this machine keeps a repository's mirror, for the next run."""
    mapping = _load_mirror_map(mirrors_file)
    mapping[repo] = str(git_dir)
    mirrors_file.parent.mkdir(parents=True, exist_ok=True)
    mirrors_file.write_text(json.dumps(dict(sorted(mapping.items())), indent=1) + "\n")


def fetch_hint(repo: str) -> str:
    """Name what to fetch for `owner/name`: the SWE-bench copy for repositories too large to fetch."""
    if repo in SWEBENCH_COPIES:
        owner, name = repo.split("/")
        return f"fetch github:{SWEBENCH_OWNER}/{owner}__{name}"
    return f"fetch github:{repo}"


def _mirror_candidates(repo: str, mirror_root: Path, clones_dir: Path) -> Iterable[Path]:
    """List the places a mirror of `owner/name` may live: fetched, SWE-bench copy, or our own clone."""
    owner, name = repo.split("/")
    for folder in (f"{owner}+{name}", f"{SWEBENCH_OWNER}+{owner}__{name}"):
        yield mirror_root / folder / "repo"
        yield mirror_root / folder
    yield clones_dir / f"{owner}+{name}.git"


def mirror_dir(
    repo: str,
    mirrors_file: Path = DEFAULT_MIRRORS_FILE,
    mirror_root: Path = DEFAULT_MIRROR_ROOT,
    clones_dir: Path = DEFAULT_CORPORA / CLONES_DIRNAME,
) -> Path | None:
    """Find the bare git directory holding `owner/name`, from mirrors.json first, else by scanning."""
    recorded = _load_mirror_map(mirrors_file).get(repo)
    if recorded and _is_git_dir(Path(recorded)):
        return Path(recorded)
    return next((p for p in _mirror_candidates(repo, mirror_root, clones_dir) if _is_git_dir(p)), None)


def clone_mirror(repo: str, url: str, clones_dir: Path = DEFAULT_CORPORA / CLONES_DIRNAME) -> Path:
    """Bare-clone a repository when no mirror exists (needs network); the clone appears whole or not at all."""
    dest = clones_dir / f"{repo.replace('/', '+')}.git"
    clones_dir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=clones_dir, prefix=f".{dest.name}."))
    env = {**os.environ, "GIT_TERMINAL_PROMPT": "0"}
    try:
        done = subprocess.run(
            ["git", "clone", "--bare", "--quiet", url, str(tmp / "repo.git")],
            capture_output=True, text=True, env=env, timeout=CLONE_TIMEOUT_S,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise CorpusError(f"git clone {url} failed ({exc})") from exc
    if done.returncode != 0:
        shutil.rmtree(tmp, ignore_errors=True)
        reason = done.stderr.strip().splitlines()[-1:] or ["no message"]
        raise CorpusError(f"git clone {url} failed ({reason[0]})")
    (tmp / "repo.git").rename(dest)
    tmp.rmdir()
    return dest


def ensure_mirror(
    repo: str,
    url: str | None = None,
    mirrors_file: Path = DEFAULT_MIRRORS_FILE,
    mirror_root: Path = DEFAULT_MIRROR_ROOT,
    clones_dir: Path = DEFAULT_CORPORA / CLONES_DIRNAME,
) -> Path:
    """Return a mirror of `owner/name`, cloning `url` only when none is found, and record it."""
    found = mirror_dir(repo, mirrors_file, mirror_root, clones_dir)
    if found is None:
        clone_url = url or f"https://github.com/{repo}.git"
        try:
            found = clone_mirror(repo, clone_url, clones_dir)
        except CorpusError as exc:
            raise CorpusError(
                f"mirror for {repo} not found under {mirror_root} and {exc}: "
                f"fetch it with the search tool's fetch verb ({fetch_hint(repo)}) or git clone {clone_url}, then rerun"
            ) from exc
    record_mirror(repo, found, mirrors_file)
    return found


def _tree_is_complete(dest: Path, commit: str) -> bool:
    """Say whether `dest` holds a finished extraction of exactly `commit`."""
    marker = dest / COMPLETE_MARKER
    return marker.is_file() and marker.read_text().strip() == commit


def _publish(tmp: Path, dest: Path, stamp: str) -> Path:
    """Mark a finished extraction and move it into place in one rename, replacing any stale copy."""
    (tmp / COMPLETE_MARKER).write_text(stamp + "\n")
    tmp.chmod(TREE_MODE)
    if dest.exists():
        shutil.rmtree(dest)
    try:
        tmp.rename(dest)
    except OSError:
        # Another process published the same tree first; keep theirs.
        shutil.rmtree(tmp, ignore_errors=True)
        if not _tree_is_complete(dest, stamp):
            raise
    return dest


def export_tree(git_dir: Path, commit: str, dest: Path) -> Path:
    """Extract `git archive COMMIT` into `dest` once; an interrupted extraction is never left at `dest`."""
    if _tree_is_complete(dest, commit):
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=dest.parent, prefix=f".{dest.name}.tmp-"))
    try:
        archive = subprocess.Popen(
            ["git", f"--git-dir={git_dir}", "archive", "--format=tar", commit],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )
        untar = subprocess.run(["tar", "-x", "-C", str(tmp)], stdin=archive.stdout, capture_output=True)
        archive.stdout.close()
        git_err = archive.stderr.read().decode(errors="replace").strip()
        if archive.wait() != 0 or untar.returncode != 0:
            tar_err = untar.stderr.decode(errors="replace").strip()
            raise CorpusError(
                f"git archive {commit} from {git_dir} failed ({git_err or tar_err}): "
                "check the commit exists in that mirror (fetch the repository again)"
            )
        return _publish(tmp, dest, commit)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def checkout(
    repo: str,
    commit: str,
    dest_root: Path = DEFAULT_TREES,
    mirrors_file: Path = DEFAULT_MIRRORS_FILE,
    mirror_root: Path = DEFAULT_MIRROR_ROOT,
) -> Path:
    """Give the tree of `owner/name` at `commit` as a folder, extracting it from the mirror on first use."""
    dest = Path(dest_root) / f"{repo.split('/')[-1]}-{commit[:COMMIT_PREFIX_LEN]}"
    if _tree_is_complete(dest, commit):
        return dest
    git_dir = mirror_dir(repo, mirrors_file, mirror_root)
    if git_dir is None:
        raise CorpusError(
            f"mirror for {repo} not found under {mirror_root} or in {mirrors_file}: "
            f"fetch it with the search tool's fetch verb ({fetch_hint(repo)}) or run "
            f"`python benchmarks/corpora.py swebench` to git clone it"
        )
    return export_tree(git_dir, commit, dest)


def _download_django_sdist(download_dir: Path, spec: str) -> Path:
    """Fetch the Django source distribution with pip (network), or reuse one already downloaded."""
    existing = sorted(download_dir.glob(DJANGO_SDIST_GLOB))
    if existing:
        return existing[-1]
    download_dir.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        [sys.executable, "-m", "pip", "download", spec, "--no-deps", "--no-binary", ":all:", "-d", str(download_dir),
         "--retries", str(PIP_RETRIES)],
        capture_output=True, text=True,
    )
    found = sorted(download_dir.glob(DJANGO_SDIST_GLOB))
    if done.returncode != 0 or not found:
        reason = (done.stderr.strip().splitlines() or ["no sdist saved"])[-1]
        raise CorpusError(
            f"pip download {spec} into {download_dir} failed ({reason}): "
            "download the Django 5.2 .tar.gz from PyPI by hand into that folder"
        )
    return found[-1]


def django_sdist(dest: Path = DEFAULT_CORPORA / DJANGO_DIRNAME, spec: str = DJANGO_SPEC) -> Path:
    """Unpack the Django 5.2 sdist (the issue's large-repo corpus) into `dest`, top folder stripped."""
    tarball = _download_django_sdist(dest.parent, spec)
    if _tree_is_complete(dest, tarball.name):
        return dest
    tmp = Path(tempfile.mkdtemp(dir=dest.parent, prefix=f".{dest.name}.tmp-"))
    try:
        with tarfile.open(tarball) as archive:
            archive.extractall(tmp, filter="data")
        (top,) = tmp.iterdir()  # an sdist holds exactly one folder, e.g. django-5.2.19/
        staged = tmp / "staged"
        top.rename(staged)
        _publish(staged, dest, tarball.name)
        return dest
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def require_file(path: Path, flag: str = "--bench") -> Path:
    """``path``, or a one-line stop naming the option that points at it: a missing data file is bad input,
    not a traceback."""
    if not path.is_file():
        raise SystemExit(f"{path} not found: pass {flag} to point at it (the data is described in "
                         f"{DEFAULT_BENCH / 'README.md'})")
    return path


def semble_repos(bench_dir: Path = DEFAULT_BENCH) -> list[dict]:
    """List the pinned semble repositories that have annotations (the 5 Python ones here)."""
    semble = bench_dir / "semble"
    annotated = {p.stem for p in (semble / "annotations").glob("*.json")}
    return [r for r in json.loads(require_file(semble / "repos.json").read_text()) if r["name"] in annotated]


def semble_dir(name: str, corpora: Path = DEFAULT_CORPORA) -> Path:
    """Say where the semble repository `name` is extracted (index its `benchmark_root` below it)."""
    return corpora / SEMBLE_DIRNAME / name


def swebench_repos(bench_dir: Path = DEFAULT_BENCH) -> dict[str, set[str]]:
    """Map each SWE-bench Lite dev repository to the base commits its tasks need."""
    commits: dict[str, set[str]] = {}
    with open(require_file(bench_dir / "swebench" / "lite_dev.jsonl")) as lines:
        for line in lines:
            task = json.loads(line)
            commits.setdefault(task["repo"], set()).add(task["base_commit"])
    return commits


def missing_commits(git_dir: Path, commits: Iterable[str]) -> list[str]:
    """Return the commits a mirror cannot resolve, in one git call."""
    wanted = sorted(commits)
    done = subprocess.run(
        ["git", f"--git-dir={git_dir}", "cat-file", "--batch-check"],
        input="".join(f"{c}^{{commit}}\n" for c in wanted), capture_output=True, text=True, check=True,
    )
    return [c for c, line in zip(wanted, done.stdout.splitlines()) if line.endswith("missing")]


def _mirror_kwargs(corpora: Path, mirror_root: Path) -> dict[str, Path]:
    """Derive the mirror lookup paths for a corpora folder."""
    return {
        "mirrors_file": corpora / "mirrors.json",
        "mirror_root": mirror_root,
        "clones_dir": corpora / CLONES_DIRNAME,
    }


def prepare_django(corpora: Path, bench_dir: Path, mirror_root: Path) -> list[str]:
    """CLI step: unpack the Django sdist (needs no bench data or mirror); return the problems met."""
    del bench_dir, mirror_root
    dest = django_sdist(corpora / DJANGO_DIRNAME)
    print(f"django: {dest}")
    return []


def prepare_semble(corpora: Path, bench_dir: Path, mirror_root: Path) -> list[str]:
    """CLI step: extract each annotated semble repository at its pinned revision; return the problems met."""
    problems = []
    for spec in semble_repos(bench_dir):
        repo = github_name(spec["url"])
        try:
            git_dir = ensure_mirror(repo, spec["url"], **_mirror_kwargs(corpora, mirror_root))
            dest = export_tree(git_dir, spec["revision"], semble_dir(spec["name"], corpora))
            print(f"semble {spec['name']}: {dest} (index {spec['benchmark_root']})")
        except CorpusError as exc:
            problems.append(str(exc))
    return problems


def prepare_swebench(corpora: Path, bench_dir: Path, mirror_root: Path) -> list[str]:
    """CLI step: make sure each SWE-bench repository has a mirror holding every base commit; return the problems."""
    problems = []
    for repo, commits in sorted(swebench_repos(bench_dir).items()):
        try:
            git_dir = ensure_mirror(repo, **_mirror_kwargs(corpora, mirror_root))
        except CorpusError as exc:
            problems.append(str(exc))
            continue
        missing = missing_commits(git_dir, commits)
        if missing:
            problems.append(
                f"{len(missing)} base commits of {repo} missing from {git_dir} (e.g. {missing[0]}): fetch it again"
            )
        print(f"swebench {repo}: {git_dir} ({len(commits) - len(missing)}/{len(commits)} base commits)")
    return problems


def main(argv: list[str] | None = None) -> int:
    """Prepare the requested corpora and list, one per line, whatever could not be prepared."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("target", choices=TARGETS)
    parser.add_argument("--corpora", type=Path, default=DEFAULT_CORPORA, help="where corpora and mirrors.json go")
    parser.add_argument("--bench", type=Path, default=DEFAULT_BENCH, help="the shared benchmark data folder")
    parser.add_argument("--mirror-root", type=Path, default=DEFAULT_MIRROR_ROOT, help="where fetched mirrors live")
    args = parser.parse_args(argv)
    steps = {"django": prepare_django, "semble": prepare_semble, "swebench": prepare_swebench}
    chosen = list(steps) if args.target == "all" else [args.target]
    args.corpora.mkdir(parents=True, exist_ok=True)
    problems: list[str] = []
    for name in chosen:
        try:
            problems += steps[name](args.corpora, bench_dir=args.bench, mirror_root=args.mirror_root)
        except (CorpusError, OSError) as exc:
            problems.append(f"{name}: {exc}")
    for problem in problems:
        print(f"not prepared: {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
