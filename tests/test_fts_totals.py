"""bm25()'s row count and token totals stay those of the live rows as files are edited and deleted.

A contentless-delete FTS5 table keeps counting deleted rows in its averages record; left alone,
every re-indexed file skews each BM25 score of a long-lived index away from a fresh one's.
"""

from __future__ import annotations

from conftest import write_tree
from indexer.store import fts_totals, schema
from indexer.workspace import Workspace

FILES = {
    "shop/cart.py": "def add_item(cart, item):\n    \"\"\"Put an item in the cart.\"\"\"\n    cart.append(item)\n",
    "shop/orders.py": "from shop.cart import add_item\n\n\ndef place_order(cart):\n    return len(cart)\n",
    "shop/pricing.py": "def total_price(items):\n    return sum(i.price for i in items)\n",
}
QUERY = "add an item to the cart and place the order"


def _edit_history(root, ws: Workspace) -> None:
    """Three edits of one file and the deletion of another, one pass each."""
    for i in range(3):
        write_tree(root, {"shop/cart.py": FILES["shop/cart.py"] + f"\n\ndef helper_{i}(cart):\n    return cart[{i}]\n"})
        ws.index()
    (root / "shop/pricing.py").unlink()
    ws.index()


def _scores(ws: Workspace) -> dict[str, float]:
    return {h.node.qualname: round(h.score, 9) for h in ws.search(QUERY, top_k=20)}


def test_edits_and_deletions_leave_the_figures_and_scores_of_a_fresh_index(tmp_path):
    root = write_tree(tmp_path / "ws", FILES)
    with Workspace(root, index_dir=tmp_path / "live") as ws:
        ws.index()
        _edit_history(root, ws)
        live_totals, live_scores = fts_totals.read(ws.reader()), _scores(ws)
        assert live_totals == fts_totals.recount(ws.reader())
    with Workspace(root, index_dir=tmp_path / "fresh") as fresh:
        fresh.index()
        assert live_totals == fts_totals.read(fresh.reader())
        assert live_totals[0] == fresh.reader().execute("SELECT count(*) FROM fts_docsize").fetchone()[0]
        assert live_scores == _scores(fresh)


def test_a_pass_that_stopped_before_settling_is_settled_by_the_next(tmp_path, monkeypatch):
    root = write_tree(tmp_path / "ws", FILES)
    with Workspace(root, index_dir=tmp_path / "idx") as ws:
        ws.index()
        with monkeypatch.context() as patched:  # as if the process died between the two commits
            patched.setattr(fts_totals, "settle", lambda conn: False)
            _edit_history(root, ws)
        assert fts_totals.read(ws.reader()) != fts_totals.recount(ws.reader())  # the note is pending
    with Workspace(root, index_dir=tmp_path / "idx") as ws:
        ws.index()  # nothing changed on disk: the pass only settles the note
        assert fts_totals.read(ws.reader()) == fts_totals.recount(ws.reader())
        assert ws.reader().execute("SELECT count(*) FROM meta WHERE key = 'fts_removed'").fetchone()[0] == 0


def test_an_index_of_schema_version_1_is_recounted_on_open(tmp_path):
    root = write_tree(tmp_path / "ws", FILES)
    with Workspace(root, index_dir=tmp_path / "idx") as ws:
        ws.index()
        true = fts_totals.read(ws.reader())
        db = ws.reader().execute("PRAGMA database_list").fetchone()[2]
    conn, _ = schema.open_database(__import__("pathlib").Path(db))
    conn.execute("UPDATE fts_data SET block = ? WHERE id = 1", (fts_totals.encode([v * 7 for v in true]),))
    conn.execute("UPDATE meta SET value = '1' WHERE key = 'schema_version'")
    conn.commit()
    conn.close()
    with Workspace(root, index_dir=tmp_path / "idx") as ws:
        assert fts_totals.read(ws.reader()) == true
        assert ws.reader().execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()[0] == "2"


def test_varints_round_trip():
    values = [0, 1, 127, 128, 16383, 16384, 2**21, 2**35 + 5, 2**56 - 1]
    assert fts_totals.decode(fts_totals.encode(values)) == values
