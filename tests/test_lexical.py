"""Query terms for BM25: stemmed like the index, identifiers first, and bounded in what they cost to search."""

from __future__ import annotations

from indexer.search import lexical


def _module(i: int) -> str:
    # every module says "common"; "rare_widget" lives in one; "parser" in a few
    lines = [f"def common_helper_{i}():\n    return 'common'\n"]
    if i == 0:
        lines.append("def rare_widget():\n    return 'rare widget'\n")
    if i < 3:
        lines.append(f"def parser_{i}():\n    return 'parsing'\n")
    return "\n\n".join(lines)


def _workspace(tree, workspace):
    ws = workspace(tree({f"pkg/mod_{i}.py": _module(i) for i in range(20)}))
    ws.index()
    return ws


def test_query_words_are_stemmed_like_the_index(tree, workspace):
    conn = _workspace(tree, workspace).reader()
    assert lexical.stems(conn, ["parsing", "parsers", "widget"]) == ["pars", "parser", "widget"]
    # cached stems answer the same as the tokenizer
    assert lexical.stems(conn, ["widget", "parsing"]) == ["widget", "pars"]
    found = {row[0] for row in conn.execute("SELECT term FROM fts_vocab")}
    assert "pars" in found  # the index holds the same stem


def test_code_identifiers_come_first_then_rarer_words(tree, workspace):
    conn = _workspace(tree, workspace).reader()
    report = "the parsing seems common, see rare_widget; it happens every time I run the report again"
    terms = [t.word for t in lexical.query_terms(conn, report)]
    assert terms[0] == "rare_widget"
    assert "parsing" in terms
    assert "common" not in terms  # in most nodes: in a long request no signal, only cost
    # a search's few words are all it has: a common one is kept
    assert "common" in [t.word for t in lexical.query_terms(conn, "common parsing")]


def test_terms_stay_within_the_posting_budget(tree, workspace, monkeypatch):
    conn = _workspace(tree, workspace).reader()
    total = conn.execute("SELECT count(*) FROM nodes").fetchone()[0]
    monkeypatch.setattr(lexical, "POSTING_BUDGET", 5 / total)  # room for ~5 postings
    monkeypatch.setattr(lexical, "MAX_DOC_SHARE", 1.0)
    assert len(lexical.query_terms(conn, "widget common parsing")) == 3  # a short query keeps every word
    monkeypatch.setattr(lexical, "ALWAYS_KEPT", 1)
    terms = [t.word for t in lexical.query_terms(conn, "widget common parsing")]
    assert terms[0] == "widget"  # the rarest: one posting
    assert "common" not in terms  # in every module: over the budget
    df = dict(conn.execute("SELECT term, doc FROM fts_vocab").fetchall())
    spent = sum(df[s] for s in lexical.stems(conn, terms))
    assert spent <= 5
    hits = lexical.bm25_search(conn, terms)
    assert hits and all(score > 0 for _, score in hits)


def test_remembered_frequencies_never_hide_a_name_added_later(tree, workspace):
    root = tree({f"pkg/mod_{i}.py": _module(i) for i in range(20)})
    ws = workspace(root)
    ws.index()
    assert not ws.search("frobnicate_totals")  # unknown yet; must not be remembered as unknown
    (root / "pkg" / "mod_3.py").write_text(_module(3) + "\n\ndef frobnicate_totals():\n    return 1\n")
    ws.index()
    assert ws.search("frobnicate_totals")[0].node.name == "frobnicate_totals"


def test_frequencies_are_counted_once_and_agree_with_the_index(tree, workspace):
    conn = _workspace(tree, workspace).reader()
    total = conn.execute("SELECT count(*) FROM nodes").fetchone()[0]
    memory = lexical.DocFrequencies()
    first = memory.of(conn, ["widget", "common", "nosuchword"], total)
    truth = dict(conn.execute("SELECT term, doc FROM fts_vocab WHERE term IN ('widget', 'common')").fetchall())
    assert first == truth and "nosuchword" not in first
    assert memory.of(conn, ["widget"], total) == {"widget": truth["widget"]}
    # a large change of the index forgets what was remembered
    memory._df["widget"] = 999
    assert memory.of(conn, ["widget"], total * 2) == {"widget": truth["widget"]}


def test_a_report_counts_the_words_it_repeats(tree, workspace):
    ws = workspace(tree({
        # ``frobnicate`` sits in a short function, so it outscores ``quuxify`` word for word
        "pkg/a.py": "def frobnicate():\n    return 1\n",
        "pkg/b.py": "def quuxify(first, second, third):\n    total = first + second + third\n    return total\n",
        **{f"pkg/filler_{i}.py": f"def filler_{i}():\n    return {i}\n" for i in range(8)},
    }))
    ws.index()
    conn = ws.reader()
    report = ("After the upgrade frobnicate is slow, but the real trouble is quuxify: quuxify gives "
              "the wrong sum, quuxify ignores an argument and quuxify is called twice")
    weights = {t.word: t.weight for t in lexical.query_terms(conn, report)}
    assert weights["quuxify"] == lexical.repeat_weight(4) == 3 and weights["frobnicate"] == 1
    assert [t.weight for t in lexical.query_terms(conn, "quuxify quuxify frobnicate")] == [1, 1]  # a search
    names = [hit.node.name for hit in ws.search(report)]
    assert names.index("quuxify") < names.index("frobnicate")
    terms = [t.word for t in lexical.query_terms(conn, report)]
    unweighted = lexical.bm25_search(conn, terms)  # what the ranking was without the weights
    assert ws.node(unweighted[0][0]).name == "frobnicate"


def test_repeat_weight_grows_with_the_log_and_is_capped():
    assert [lexical.repeat_weight(n) for n in (1, 2, 3, 4, 7, 8, 100)] == [1, 2, 2, 3, 3, 4, 4]
