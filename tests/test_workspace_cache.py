"""The workspace's answer cache: hits when nothing changed, never stale after an edit or a task event."""

from __future__ import annotations

import threading

from conftest import write_tree

from indexer.workspace import Workspace


def _hits(ws: Workspace, tier: str) -> int:
    return ws.cache.stats()["tiers"][tier]["hits"]


def test_context_is_served_from_cache_until_a_file_it_was_built_from_changes(tmp_path):
    root = write_tree(tmp_path / "ws", {
        "shop/cart.py": "def cart_total(items):\n    return sum(items)\n",
        "shop/tax.py": "def tax_rate():\n    return 0.2\n",
    })
    with Workspace(root, index_dir=tmp_path / "idx") as ws:
        ws.index()
        first = ws.context("cart total", budget=500)
        again = ws.context("cart total", budget=500)
        assert again.text == first.text
        assert _hits(ws, "context") == 1
        (root / "shop/cart.py").write_text("def cart_total(items):\n    return round(sum(items), 2)\n")
        ws.index()
        fresh = ws.context("cart total", budget=500)
        assert "round(sum(items), 2)" in fresh.text  # never the stale body
        assert _hits(ws, "context") == 1


def test_a_query_context_sees_what_a_new_file_or_any_other_file_adds(tmp_path):
    """A query's ranking reads the whole index: code a new file, or a file none of the answer came from,
    adds for the query must be in the next answer (a context built only from files of the first answer's
    candidates was served stale, under a fresh generation)."""
    root = write_tree(tmp_path / "ws", {
        "shop/cart.py": "def cart_total(items):\n    return sum(items)\n",
        "shop/tax.py": "def tax_rate():\n    return 0.2\n",
    })
    with Workspace(root, index_dir=tmp_path / "idx") as ws:
        ws.index()
        assert "quokka_marker" not in ws.context("quokka marker", budget=500).text
        write_tree(root, {"shop/zoo.py": "def quokka_marker():\n    return 1\n"})
        ws.index(paths=["shop/zoo.py"])
        assert "def quokka_marker" in ws.context("quokka marker", budget=500).text
        write_tree(root, {"shop/tax.py": "def tax_rate():\n    return 0.2\n\n\ndef quokka_marker_rate():\n"
                                         "    return 0.3\n"})
        ws.index(paths=["shop/tax.py"])
        assert "def quokka_marker_rate" in ws.context("quokka marker", budget=500).text
        focus = ws.context(focus="shop/cart.py", budget=500)
        write_tree(root, {"shop/tax.py": "def tax_rate():\n    return 0.25\n"})
        ws.index(paths=["shop/tax.py"])
        hits = _hits(ws, "context")
        assert ws.context(focus="shop/cart.py", budget=500).text == focus.text
        assert _hits(ws, "context") == hits + 1  # no query: built from its files and their links only


def test_search_results_follow_the_index_generation(tmp_path):
    root = write_tree(tmp_path / "ws", {"a.py": "def alpha_parser():\n    pass\n"})
    with Workspace(root, index_dir=tmp_path / "idx") as ws:
        ws.index()
        hits = ws.search("alpha parser")
        assert hits[0].node.qualname == "a.alpha_parser"  # then its module, linked by the graph
        assert {h.node.path for h in hits} == {"a.py"}
        assert ws.search("alpha parser")[0].to_json()["summary"] == "def alpha_parser()"
        assert _hits(ws, "results") == 1
        (root / "b.py").write_text("def alpha_parser_two():\n    pass\n")
        ws.index()
        assert "b.alpha_parser_two" in {h.node.qualname for h in ws.search("alpha parser")}


def test_task_context_is_rebuilt_after_a_new_event(tmp_path):
    root = write_tree(tmp_path / "ws", {"m.py": "def run_job():\n    pass\n"})
    with Workspace(root, index_dir=tmp_path / "idx") as ws:
        ws.index()
        ws.record("T", "task_started", {"title": "speed up run_job"})
        before = ws.context(task_id="T", budget=400)
        ws.record("T", "note", {"text": "profiled"})
        ws.record("T", "task_status", {"status": "blocked"})
        after = ws.context(task_id="T", budget=400)
        assert "[active]" in before.text and "[blocked]" in after.text


def test_module_summary_is_rebuilt_when_an_importer_appears(tmp_path):
    root = write_tree(tmp_path / "ws", {"lib.py": "def helper():\n    pass\n", "app.py": "x = 1\n"})
    with Workspace(root, index_dir=tmp_path / "idx") as ws:
        ws.index()
        assert "imported by" not in ws.module_summary("lib.py")
        (root / "app.py").write_text("from lib import helper\n")
        ws.index()
        assert "imported by: app" in ws.module_summary("lib.py")


def test_threads_asking_at_once_share_one_cache_and_one_predictor(tmp_path):
    """A request, the warm-up and the prefetcher reach for the lazily made cache and model together; two
    SQLite backends on a new file raced to switch it to WAL ("database is locked")."""
    write_tree(tmp_path / "ws", {"a.py": "def f():\n    pass\n"})
    with Workspace(tmp_path / "ws", index_dir=tmp_path / "idx") as ws:
        start = threading.Barrier(8)
        got: list[tuple] = []
        errors: list[BaseException] = []

        def ask() -> None:
            start.wait()
            try:
                got.append((ws.cache, ws.predictor))
            except BaseException as exc:  # noqa: BLE001 - reported below
                errors.append(exc)

        threads = [threading.Thread(target=ask) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert not errors
        assert len({id(c) for c, _ in got}) == 1 and len({id(p) for _, p in got}) == 1 and len(got) == 8
