"""Commit history as evidence for localisation: past commits whose messages read like the query.

An issue report often describes a fault in the words of an earlier commit that touched the same code
("Fixed crash of QuerySet.bulk_create() with ..."). BugLocator-style: score the workspace's past commit
messages against the query with BM25 and credit the files each of the best commits changed, shared
among them. On SWE-bench Lite dev the gold file was among these files' top 5 for 98 of 166 reports, 6
of them among the 30 the code's own ranking missed (benchmarks/README.md).

Commits are mined from git into the index database (a table and an FTS5 index of the messages, whose
stems and counts an in-memory copy scores), replaced whenever the head commit mined differs, so a branch
switch or a rewritten history never leaves stale evidence.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from indexer import git
from indexer.search import lexical
from indexer.search.memo import PerIndexState
from indexer.search.postings import B, K1, TOKENIZER
from indexer.terms import distinct_terms, terms_text
from indexer.testpaths import is_test_path

#: The newest commits mined: ~0.4 s of git and ~0.3 s of inserts on Django, enough to cover years of work.
MAX_COMMITS = 5000
#: A commit touching more files than this is a refactoring or a release, not evidence about one fault.
MAX_FILES = 30
#: Best-matching commits whose files are credited.
TOP_COMMITS = 20
#: Query words scored (a report's first distinct ones; the same cap as the code search).
MAX_QUERY_WORDS = 60
_HEAD_KEY = "history_head"
_COMMIT, _BODY, _END = "\x00", "\x01", "\x02"  # git prints them for %x00 %x01 %x02

SCHEMA = f"""
CREATE TABLE IF NOT EXISTS commits (id INTEGER PRIMARY KEY, sha TEXT NOT NULL, files TEXT NOT NULL);
CREATE VIRTUAL TABLE IF NOT EXISTS commit_fts USING fts5(message, tokenize = "{TOKENIZER}", content = '');
"""


class HistoryError(Exception):
    """History could not be read from git; the message says why."""


def ensure_schema(conn) -> None:
    """Create the history tables if this index predates them (no schema bump: older builds ignore them)."""
    conn.executescript(SCHEMA)


def mined_head(conn) -> str | None:
    """The head commit whose history the index holds, or None."""
    try:
        row = conn.execute("SELECT value FROM meta WHERE key=?", (_HEAD_KEY,)).fetchone()
    except Exception:  # noqa: BLE001 - an index without meta has no history either
        return None
    return row[0] if row else None


def summary(conn) -> dict | None:
    """The mined head and its commit count (for status), or None before any mining."""
    head = mined_head(conn)
    if head is None:
        return None
    try:
        commits = conn.execute("SELECT count(*) FROM commits").fetchone()[0]
    except Exception:  # noqa: BLE001 - tables missing: nothing stored
        commits = 0
    return {"head": head, "commits": commits}


def read_commits(repo: Path, head: str, max_commits: int = MAX_COMMITS,
                 subdir: str | None = None) -> list[tuple[str, str, list[str]]]:
    """(sha, message, changed .py files) of the non-merge commits up to ``head``, newest first.

    Paths are relative to ``repo`` (``--relative``: a workspace inside a larger repository sees its own
    paths), or to ``subdir`` of it (a bare repository has no folder to be relative to); commits that touch
    no Python file there, or more than MAX_FILES files, are left out.
    """
    relative = f"--relative={subdir.strip('/')}/" if subdir else "--relative"
    out = git.run(repo, "log", "--no-merges", "--no-renames", "--name-only", relative,
                  f"--max-count={max_commits}", "--format=%x00%H%x01%B%x02", head)
    if out is None:
        raise HistoryError(f"git log {head} failed in {repo}")
    commits = []
    for block in out.split(_COMMIT)[1:]:
        sha, _, rest = block.partition(_BODY)
        message, _, names = rest.partition(_END)
        files = [f for f in (line.strip() for line in names.splitlines()) if f.endswith((".py", ".pyi"))]
        if 0 < len(files) <= MAX_FILES:
            commits.append((sha.strip(), message.strip(), files))
    return commits


def store(conn, head: str, commits: list[tuple[str, str, list[str]]]) -> None:
    """Replace the stored history with ``commits`` mined at ``head`` (the caller commits the transaction)."""
    ensure_schema(conn)
    conn.execute("DELETE FROM commits")
    conn.execute("INSERT INTO commit_fts(commit_fts) VALUES ('delete-all')")  # how a contentless table empties
    conn.executemany("INSERT INTO commits(id, sha, files) VALUES (?, ?, ?)",
                     ((i, sha, "\n".join(files)) for i, (sha, _, files) in enumerate(commits, 1)))
    conn.executemany("INSERT INTO commit_fts(rowid, message) VALUES (?, ?)",
                     ((i, terms_text(message)) for i, (_, message, _) in enumerate(commits, 1)))
    conn.execute("INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)", (_HEAD_KEY, head))


def file_scores(conn, query: str, top_commits: int = TOP_COMMITS) -> dict[str, float]:
    """Files changed by the past commits that best match ``query``, each scored in (0, 1] (1 = the best).

    A commit's BM25 score is shared among its files by 1 / sqrt(files), so a one-file fix says more about
    its file than a sweep over twenty. Test files get no credit: the fault sits in the code they test.
    """
    words = distinct_terms(query)[:MAX_QUERY_WORDS]
    head = mined_head(conn) if words else None
    if head is None:
        return {}
    index = _commit_index(conn, head)
    if index is None:
        return {}
    scores: dict[str, float] = {}
    for doc, score in index.search(lexical.stems(conn, words), top_commits):
        paths = index.files[doc]
        share = score / math.sqrt(len(paths))
        for path in paths:
            if not is_test_path(path):
                scores[path] = scores.get(path, 0.0) + share
    best = max(scores.values(), default=0.0)
    return {p: s / best for p, s in scores.items()} if best > 0 else {}


class CommitIndex:
    """BM25 over the stored commit messages, in memory.

    FTS5 answered a report's OR query of ~60 words in ~15 ms on Django's 3,662 commits (every common
    word walks most doclists), as much again as the rest of a context. The same postings in numpy arrays,
    scored with FTS5's own bm25() formula and constants, give FTS5's scores in well under a millisecond.
    """

    def __init__(self, postings: dict[str, tuple[np.ndarray, np.ndarray]], files: dict[int, list[str]]) -> None:
        self._postings = postings  # stem -> (commit ids, BM25's term-frequency part of each)
        self.files = files  # commit id -> changed files
        self._docs = len(files)
        self._slots = max(files, default=0) + 1  # score array length: ids are rowids from 1

    @classmethod
    def load(cls, conn) -> CommitIndex:
        """Read the stored history through an fts5vocab view of the message index (its own stems)."""
        conn.execute("CREATE VIRTUAL TABLE IF NOT EXISTS temp.commit_vocab USING fts5vocab(main, commit_fts, "
                     "'instance')")
        counts = conn.execute("SELECT term, doc, count(*) FROM temp.commit_vocab GROUP BY term, doc").fetchall()
        files = {i: f.split("\n") for i, f in conn.execute("SELECT id, files FROM commits")}
        lengths: dict[int, int] = {}
        for _, doc, n in counts:
            lengths[doc] = lengths.get(doc, 0) + n
        average = sum(lengths.values()) / max(len(lengths), 1)
        grouped: dict[str, tuple[list[int], list[float]]] = {}
        for term, doc, tf in counts:
            docs, parts = grouped.setdefault(term, ([], []))
            docs.append(doc)
            parts.append(tf * (K1 + 1) / (tf + K1 * (1 - B + B * lengths[doc] / average)))
        postings = {t: (np.array(d, dtype=np.int64), np.array(p)) for t, (d, p) in grouped.items()}
        return cls(postings, files)

    def search(self, stems: list[str], limit: int) -> list[tuple[int, float]]:
        """The ``limit`` best (commit id, score) for an OR of ``stems`` (a repeated stem counts again, as in
        FTS5), best first."""
        if not self._docs:
            return []
        scores = np.zeros(self._slots)
        for stem in stems:
            found = self._postings.get(stem)
            if found is None:
                continue
            docs, parts = found
            idf = math.log((self._docs - len(docs) + 0.5) / (len(docs) + 0.5))
            scores[docs] += max(idf, 1e-6) * parts  # FTS5 floors a negative IDF the same way
        hit = np.flatnonzero(scores)
        best = hit[np.lexsort((hit, -scores[hit]))][:limit]
        return [(int(i), float(scores[i])) for i in best]


_LOADED = PerIndexState(kept=2)


def _commit_index(conn, head: str) -> CommitIndex | None:
    """The in-memory index of the history mined at ``head`` into ``conn``'s database (loaded once)."""
    try:
        return _LOADED.get(conn, lambda: CommitIndex.load(conn), state=head)
    except Exception:  # noqa: BLE001 - no history tables in this snapshot: no evidence
        return None
