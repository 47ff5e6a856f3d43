"""BM25 from memory: the same hits and scores as FTS5, kept exact across edits by patches."""

from __future__ import annotations

import random
import time

from indexer.search import lexical, postings

QUERIES = ["parse the widget config", "render template context", "widget", "cache key version invalid",
           "Error when parsing config files with a widget registry", "nothing_matches_this_word",
           # a report that repeats words: weighted terms must score alike too
           "The registry fails to load the widget: loading a widget from the registry raises an error, "
           "and the widget registry then caches the error for every widget it loads later"]
WORDS = ["widget", "parse", "config", "render", "template", "context", "cache", "key", "version", "registry",
         "error", "file", "load", "save", "value"]


def _module(rng: random.Random, i: int) -> str:
    out = [f'"""Module {i} about {" ".join(rng.sample(WORDS, 3))}."""\n']
    for j in range(rng.randint(1, 4)):
        a, b = rng.sample(WORDS, 2)
        out.append(f"def {a}_{b}_{i}_{j}({rng.choice(WORDS)}):\n    '''{b} the {a}.'''\n"
                   f"    return {rng.choice(WORDS)}_{j} + '{rng.choice(WORDS)} {a}'\n")
    if rng.random() < 0.5:
        a = rng.choice(WORDS)
        out.append(f"class {a.title()}Thing{i}:\n    def {a}(self):\n        return self.{rng.choice(WORDS)}\n")
    return "\n\n".join(out)


def _files(seed: int, n: int = 12) -> dict[str, str]:
    rng = random.Random(seed)
    return {f"pkg/{rng.choice(['core', 'io', 'web'])}/m{i}.py": _module(rng, i) for i in range(n)}


def _same_as_fts(conn, memory: postings.Postings) -> None:
    for query in QUERIES:
        found = lexical.query_terms(conn, query)
        terms, weights = [t.word for t in found], [t.weight for t in found]
        for limit in (3, 50):
            assert (lexical.bm25_search(conn, terms, limit, memory, weights)
                    == lexical.bm25_search(conn, terms, limit, None, weights))
        assert lexical.query_terms(conn, query, postings=memory) == lexical.query_terms(conn, query)


def _snapshot(ws):
    conn = ws.reader()
    conn.execute("BEGIN")
    return conn


def test_loaded_postings_score_exactly_like_fts5(tree, workspace):
    ws = workspace(tree(_files(1)))
    ws.index()
    conn = _snapshot(ws)
    memory = postings.load(conn)
    assert memory.n_rows == conn.execute("SELECT count(*) FROM fts_docsize").fetchone()[0]  # nothing deleted yet
    assert memory.total_tokens == memory.doc_len.sum()
    assert memory.doc_frequencies(["widget"]) == dict(conn.execute(
        "SELECT term, doc FROM fts_vocab WHERE term = 'widget'").fetchall())
    hits = lexical.bm25_search(conn, ["widget", "parse"], 50, memory)
    assert hits and all(s > 0 for _, s in hits)
    _same_as_fts(conn, memory)
    conn.rollback()


def test_loading_in_small_chunks_joins_runs_split_at_chunk_edges(tree, workspace, monkeypatch):
    ws = workspace(tree(_files(5)))
    ws.index()
    conn = _snapshot(ws)
    whole = postings.load(conn)
    monkeypatch.setattr(postings, "_CHUNK", 7)  # most (term, doc) runs longer than one row get split
    chunked = postings.load(conn)
    assert (chunked.docs == whole.docs).all() and (chunked.weights == whole.weights).all()
    assert (chunked.starts == whole.starts).all() and (chunked.doc_len == whole.doc_len).all()
    assert whole.weights.max() > 6  # some run does span rows
    conn.rollback()


def test_patched_postings_equal_fts5_and_a_fresh_load_after_edits(tree, workspace):
    files = _files(2)
    root = tree(files)
    ws = workspace(root)
    ws.index()
    conn = _snapshot(ws)
    memory = postings.load(conn)
    conn.rollback()
    rng = random.Random(7)
    for step in range(6):
        paths = sorted(files)
        edit = rng.choice(paths)
        (root / edit).write_text(_module(rng, 100 + step))  # new names and words
        files[edit] = "edited"
        if step % 2 == 0:
            gone = rng.choice([p for p in paths if p != edit])
            (root / gone).unlink()
            del files[gone]
        if step % 3 == 0:
            new = f"pkg/new/n{step}.py"
            (root / new).parent.mkdir(parents=True, exist_ok=True)
            (root / new).write_text(_module(rng, 200 + step))
            files[new] = "new"
        if step == 4:  # a rename keeps the content, changes the path terms
            old = sorted(files)[0]
            (root / old).rename(root / "pkg" / "renamed.py")
            files["pkg/renamed.py"] = files.pop(old)
        ws.index()
        conn = _snapshot(ws)
        memory = postings.patch(memory, conn)
        assert memory.generation == postings.generation(conn)
        _same_as_fts(conn, memory)
        fresh = postings.load(conn)
        vocabulary = [t for t, in conn.execute("SELECT term FROM fts_vocab")]
        assert memory.doc_frequencies(vocabulary) == fresh.doc_frequencies(vocabulary)
        assert memory.n_rows == fresh.n_rows
        assert (memory.doc_len == fresh.doc_len[: len(memory.doc_len)]).all() and not fresh.doc_len[len(memory.doc_len):].any()
        assert (memory.n_rows, memory.total_tokens) == (fresh.n_rows, fresh.total_tokens)
        conn.rollback()


def test_memory_waits_for_a_second_request_then_follows_each_generation(tree, workspace):
    root = tree(_files(3))
    ws = workspace(root)
    ws.index()
    memory = postings.PostingMemory(lambda: _fresh_reader(ws), settle=0.0)
    conn = _snapshot(ws)
    assert memory.source(conn) is None  # the first request never starts a load
    memory.wait()
    assert memory.source(conn) is None  # the second starts it; FTS5 answers meanwhile
    memory.wait()
    loaded = memory.source(conn)
    assert loaded is not None and loaded.generation == postings.generation(conn)
    conn.rollback()
    (root / "pkg" / "added.py").write_text("def widget_registry_lookup():\n    return 'registry'\n")
    ws.index()
    conn = _snapshot(ws)
    assert memory.source(conn) is None  # a new generation: FTS5 until the patch lands
    memory.wait()
    patched = memory.source(conn)
    assert patched is not None and patched.generation == loaded.generation + 1
    hits = lexical.bm25_search(conn, ["widget_registry_lookup"], 5, patched)
    assert hits == lexical.bm25_search(conn, ["widget_registry_lookup"], 5) and len(hits) == 1
    conn.rollback()
    memory.close()


def _fresh_reader(ws):
    from indexer import sqlite

    return sqlite.connect(ws.db_path, readonly=True, vectors=False)


def test_workspace_search_is_the_same_from_memory(tree, workspace):
    ws = workspace(tree(_files(4, n=20)))
    ws.index()
    before = ws.ranked("parse widget config")  # from FTS5: the memory is not loaded yet
    ws.ranked("warm the memory up")
    ws._postings.wait()
    conn = _snapshot(ws)
    assert ws._postings.source(conn) is not None
    conn.rollback()
    assert ws.ranked("parse widget config") == before and before


def test_a_new_generation_is_patched_once_the_index_settles(tree, workspace):
    root = tree(_files(6))
    ws = workspace(root)
    ws.index()
    memory = postings.PostingMemory(lambda: _fresh_reader(ws), settle=0.5)
    memory.start()
    memory.wait()
    for i in range(3):
        (root / "pkg" / f"burst_{i}.py").write_text(f"def burst_widget_{i}():\n    return {i}\n")
    ws.index()
    conn = _snapshot(ws)
    assert memory.source(conn) is None
    memory.wait()
    assert memory.source(conn) is None  # not settled yet: nothing was patched
    memory.wait()
    time.sleep(0.6)
    assert memory.source(conn) is None  # settled now: this request starts the update
    memory.wait()
    updated = memory.source(conn)
    assert updated is not None and updated.doc_frequencies(["burst_widget_2"]) == {"burst_widget_2": 1}
    conn.rollback()
    memory.close()


def test_an_index_with_no_code_loads_empty_postings(tree, workspace):
    ws = workspace(tree({"README.md": "no python here\n"}))
    ws.index()
    conn = _snapshot(ws)
    memory = postings.load(conn)  # FTS5 writes no averages record before its first row
    assert (memory.n_rows, memory.total_tokens) == (0, 0)
    assert lexical.bm25_search(conn, ["widget"], 10, memory) == []
    conn.rollback()
