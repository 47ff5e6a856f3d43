"""The command line as a user meets it: one JSON object on stdout with ``--json``, bad input as exit 2 and one
line on stderr, and commands run side by side on one index."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import write_tree
from indexer import tokens
from server.cli import EXIT_BAD_INPUT, main

FILES = {
    "shop/__init__.py": "",
    "shop/cart.py": "from shop.tax import tax_rate\n\n\ndef cart_total(items):\n    \"\"\"Sum with tax.\"\"\"\n"
                    "    return sum(items) * (1 + tax_rate())\n",
    "shop/tax.py": "def tax_rate():\n    return 0.2\n",
    "shop/legacy.py": "def tax_rate():\n    return 0.1\n",
    "tests/test_cart.py": "from shop.cart import cart_total\n\n\ndef test_total():\n    assert cart_total([1])\n",
}


@pytest.fixture
def shop(tmp_path: Path) -> Path:
    return write_tree(tmp_path / "ws", FILES)


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("command", [["search", "cart total"], ["context", "cart total", "--budget", "300"],
                                     ["status"], ["graph", "shop.cart.cart_total"]])
def test_json_output_is_one_object_and_nothing_else(shop, tmp_path, capsys, command):
    code, out, _ = run(capsys, *command, "--workspace", str(shop), "--index-dir", str(tmp_path / "idx"), "--json")
    assert code == 0
    answer = json.loads(out)  # the whole of stdout
    assert isinstance(answer, dict)
    if command[0] == "context":
        assert answer["tokens"] <= 300 and tokens.count(answer["text"]) == answer["tokens"]
        assert "def cart_total" in answer["text"]


def test_a_name_of_several_nodes_says_which_was_used_and_what_else(shop, tmp_path, capsys):
    where = ("--workspace", str(shop), "--index-dir", str(tmp_path / "idx"))
    code, out, err = run(capsys, "graph", "tax_rate", *where, "--json")
    assert code == 0 and json.loads(out)["matches"] == 2
    used = json.loads(out)["node"]["name"]
    other = ({"shop.tax.tax_rate", "shop.legacy.tax_rate"} - {used}).pop()
    assert err.startswith(f"codeahead graph: 'tax_rate' names 2 nodes; used {used} ") and other in err
    code, out, err = run(capsys, "context", "--focus", "tax_rate", *where, "--budget", "200")
    assert code == 0 and "names 2 nodes" in err
    assert run(capsys, "graph", "shop.tax.tax_rate", *where)[2] == ""  # one node: nothing to say


def test_an_unusable_index_folder_is_one_line_and_exit_2(shop, tmp_path, capsys):
    a_file = shop / "shop" / "tax.py"
    for index_dir in (a_file, a_file / "below", Path("/proc/no-such-index")):
        code, out, err = run(capsys, "status", "--workspace", str(shop), "--index-dir", str(index_dir))
        assert (code, out) == (EXIT_BAD_INPUT, "")
        assert err.startswith("codeahead status: cannot use ") and err.count("\n") == 1, err


def test_an_unknown_embedder_is_one_line_and_exit_2(shop, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("CODEAHEAD_EMBEDDER", "bogus")
    code, out, err = run(capsys, "search", "cart", "--workspace", str(shop), "--index-dir", str(tmp_path / "idx"))
    assert (code, out) == (EXIT_BAD_INPUT, "")
    assert "unknown embedder 'bogus'" in err and err.count("\n") == 1
    monkeypatch.setenv("CODEAHEAD_EMBEDDER", "")  # empty is unset: the default
    assert run(capsys, "search", "cart", "--workspace", str(shop), "--index-dir", str(tmp_path / "idx"))[0] == 0


def test_commands_run_side_by_side_on_a_new_index(shop, tmp_path):
    """Agents run tool calls in parallel; each command indexes first. Four at once on a new index: one
    process took the database another was creating for a foreign file and moved it aside, and another
    failed on inserting files the first had just stored."""
    index_dir = tmp_path / "idx"
    argv = [sys.executable, "-m", "server.cli", "search", "cart total", "--workspace", str(shop),
            "--index-dir", str(index_dir), "--json"]
    env_path = str(Path(__file__).resolve().parents[1])
    procs = [subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=env_path)
             for _ in range(4)]
    outcomes = [(p.wait(timeout=120), *p.communicate()) for p in procs]
    for code, out, err in outcomes:
        assert code == 0, err
        assert all(line.startswith("waiting for another codeahead process") for line in err.splitlines()), err
        assert json.loads(out)["hits"][0]["name"] == "shop.cart.cart_total"
    assert not [p.name for p in index_dir.iterdir() if ".broken-" in p.name]  # nothing was moved aside


def test_serve_with_an_unusable_index_folder_says_so_in_one_line(shop):
    done = subprocess.run([sys.executable, "-m", "server.cli", "serve", "--workspace", str(shop), "--index-dir",
                           str(shop / "shop" / "tax.py")], input="", capture_output=True, text=True, timeout=60,
                          cwd=str(Path(__file__).resolve().parents[1]))
    assert done.returncode != 0 and done.stdout == ""
    assert done.stderr.startswith("codeahead serve: cannot use ") and done.stderr.count("\n") == 1, done.stderr


@pytest.mark.parametrize("argv, says", [
    (["context", "--budget", "abc"], "invalid int value: 'abc'"),
    (["context", "   "], "context needs a QUERY (not blank)"),
    (["predict", "--after", "shop/nope.py"], "shop/nope.py is not an indexed file"),
    (["task", "T", "--at", "-1"], "at must be an event sequence number"),
    (["task", "T", "--at", "0"], "no events for task 'T' up to seq 0: its first event is seq 1"),
    (["status", "--index-dir", ""], "--index-dir is empty"),
    (["status", "--workspace", " "], "--workspace is empty"),
    (["predict", "--after", ""], "--after is empty"),
])
def test_bad_input_is_one_line_and_exit_2(shop, tmp_path, capsys, argv, says):
    where = ["--workspace", str(shop), "--index-dir", str(tmp_path / "idx")]
    assert run(capsys, "event", "task_started", "--task", "T", "--data", '{"title": "t"}', *where)[0] == 0
    with pytest.raises(SystemExit) as exited:  # argparse exits; the commands return their code
        raise SystemExit(main([argv[0], *where, *argv[1:]]))  # the case's own options come last, and win
    out, err = capsys.readouterr()
    assert (exited.value.code, out) == (EXIT_BAD_INPUT, "")
    assert says in err and err.count("\n") == 1, err


def test_predict_after_a_path_and_line_names_its_file(shop, tmp_path, capsys):
    code, out, _ = run(capsys, "predict", "--after", "shop/cart.py:4", "--workspace", str(shop),
                       "--index-dir", str(tmp_path / "idx"), "--json")
    assert code == 0
    reasons = {p["path"]: p["reasons"] for p in json.loads(out)["predictions"]}
    assert any("imported by the current file" in r for r in reasons.get("shop/tax.py", []))


def test_graph_says_when_it_stopped_listing_links(tmp_path, capsys, monkeypatch):
    import server.cli as cli

    monkeypatch.setattr(cli, "MAX_LINKS", 3)
    root = write_tree(tmp_path / "ws", {"hub.py": "def hub():\n    pass\n",
                                        **{f"u{i}.py": f"from hub import hub\n\n\ndef use_{i}():\n    hub()\n"
                                           for i in range(5)}})
    where = ("--workspace", str(root), "--index-dir", str(tmp_path / "idx"))
    code, out, _ = run(capsys, "graph", "hub.hub", *where, "--json")
    answer = json.loads(out)
    assert code == 0 and answer["truncated"] and len(answer["links"]) == 3
    code, out, _ = run(capsys, "graph", "hub.hub", *where)
    assert out.rstrip().endswith("(the first 3 links, nearest first: narrow with --kinds or --depth)")
    code, out, _ = run(capsys, "graph", "u1.use_1", *where, "--json")
    assert not json.loads(out)["truncated"]


def test_graph_kinds_name_their_own_direction(tmp_path, capsys):
    root = write_tree(tmp_path / "ws", {"a.py": "def a():\n    b()\n\n\ndef b():\n    pass\n\n\ndef c():\n    a()\n"})
    where = ("--workspace", str(root), "--index-dir", str(tmp_path / "idx"), "--json")
    code, out, _ = run(capsys, "graph", "a.a", "--kinds", "calls", *where)
    assert code == 0 and [(l["link"], l["name"]) for l in json.loads(out)["links"]] == [("calls", "a.b")]
    code, out, _ = run(capsys, "graph", "a.a", "--kinds", "called_by", *where)
    assert [(l["link"], l["name"]) for l in json.loads(out)["links"]] == [("called_by", "a.c")]


def test_graph_says_which_link_a_deeper_one_was_reached_through(tmp_path, capsys):
    root = write_tree(tmp_path / "ws", {"a.py": "def a():\n    b()\n\n\ndef b():\n    c()\n\n\ndef c():\n    pass\n"})
    where = ("--workspace", str(root), "--index-dir", str(tmp_path / "idx"))
    code, out, _ = run(capsys, "graph", "a.a", "--kinds", "calls", "--depth", "2", *where, "--json")
    assert [(l["name"], l["depth"], l.get("via")) for l in json.loads(out)["links"]] == [
        ("a.b", 1, None), ("a.c", 2, "a.b")]
    code, out, _ = run(capsys, "graph", "a.a", "--kinds", "calls", "--depth", "2", *where)
    assert out.splitlines()[-1].endswith("via a.b")


def test_stats_shows_no_rate_where_nothing_was_looked_up(shop, tmp_path, capsys):
    code, out, _ = run(capsys, "stats", "--workspace", str(shop), "--index-dir", str(tmp_path / "idx"))
    rows = {line.split()[0]: line.split() for line in out.splitlines()[1:5]}
    assert code == 0 and rows["context"][1:4] == ["0", "0", "-"]  # not 0.0%: no lookup in this process
    assert "hit@5 -, mrr -" in out


def test_stats_counts_the_hits_that_entries_on_disk_served_other_commands(shop, tmp_path, capsys):
    where = ("--workspace", str(shop), "--index-dir", str(tmp_path / "idx"))
    for _ in range(3):  # the first builds the answer, the next two are served from the cache
        assert run(capsys, "context", "cart total", *where, "--budget", "300")[0] == 0
    stats = json.loads(run(capsys, "stats", *where, "--json")[1])
    assert stats["cache"]["tiers"]["context"]["hits"] == 0  # this process looked nothing up
    assert stats["stored_hits"]["context"] == 2


def test_plain_context_piped_is_the_budgeted_text_byte_for_byte(shop, tmp_path, capsys):
    where = ("--workspace", str(shop), "--index-dir", str(tmp_path / "idx"))
    for budget in ("40", "300"):
        code, out, _ = run(capsys, "context", "cart total", *where, "--budget", budget, "--json")
        text = json.loads(out)["text"]
        code, out, _ = run(capsys, "context", "cart total", *where, "--budget", budget)
        assert code == 0 and out == text  # capsys is no terminal: no newline of the CLI's own
        assert tokens.count(out) <= int(budget)


def test_an_empty_context_says_why_on_stderr(shop, tmp_path, capsys):
    where = ("--workspace", str(shop), "--index-dir", str(tmp_path / "idx"))
    code, out, err = run(capsys, "context", "cart total", *where, "--budget", "5")
    assert code == 0 and out == ""
    assert "the context is empty: a budget of 5 tokens fits none of the" in err


def test_predict_for_a_task_reads_the_query_its_start_event_gave(shop, tmp_path, capsys):
    where = ("--workspace", str(shop), "--index-dir", str(tmp_path / "idx"))
    assert run(capsys, "event", "task_started", "--task", "T", "--data",
               '{"title": "wrong rate", "query": "legacy tax rate"}', *where)[0] == 0
    code, out, _ = run(capsys, "predict", "--task", "T", *where, "--json")  # another process would do the same
    assert code == 0
    reasons = {p["path"]: p["reasons"] for p in json.loads(out)["predictions"]}
    assert any(r.startswith("matches the task description") for r in reasons.get("shop/legacy.py", []))


def test_an_explicit_budget_wins_over_the_profile_as_documented(shop, tmp_path, capsys):
    where = ("--workspace", str(shop), "--index-dir", str(tmp_path / "idx"), "--json")
    code, out, err = run(capsys, "context", "cart total", "--budget", "300", "--profile", "qwen3-8b-32k", *where)
    assert code == 0, err
    answer = json.loads(out)
    assert answer["budget"] == 300 and answer["tokens"] <= 300


def test_an_event_for_a_task_never_started_is_recorded_with_a_note(shop, tmp_path, capsys):
    where = ("--workspace", str(shop), "--index-dir", str(tmp_path / "idx"))
    code, out, err = run(capsys, "event", "note", "--task", "tsk-typo", "--data", '{"text": "x"}', *where, "--json")
    assert code == 0 and "task 'tsk-typo' had no events: this one starts it" in err
    assert "record task_started" in json.loads(out)["note"]
    run(capsys, "event", "task_started", "--task", "T2", "--data", '{"title": "t"}', *where)
    code, out, err = run(capsys, "event", "note", "--task", "T2", "--data", '{"text": "x"}', *where, "--json")
    assert code == 0 and "note" not in json.loads(out) and "had no events" not in err


def test_a_cached_focus_context_learns_of_a_new_caller_another_command_indexed(shop, tmp_path, capsys):
    where = ("--workspace", str(shop), "--index-dir", str(tmp_path / "idx"))
    before = run(capsys, "context", "--focus", "shop/tax.py", "--budget", "800", *where)[1]
    assert "add_vat" not in before
    (shop / "shop" / "vat.py").write_text("from shop.tax import tax_rate\n\n\ndef add_vat(x):\n"
                                          "    return x * tax_rate()\n")
    assert run(capsys, "index", *where)[0] == 0  # another command's pass: this cache saw no invalidation
    after = run(capsys, "context", "--focus", "shop/tax.py", "--budget", "800", *where)[1]
    assert "add_vat" in after  # the cached answer, stored in the index folder, is not served


def test_status_counts_changes_made_while_nothing_watched_and_says_when_it_waits(shop, tmp_path, capsys):
    import threading

    from indexer.locks import index_lock

    where = ("--workspace", str(shop), "--index-dir", str(tmp_path / "idx"))
    assert json.loads(run(capsys, "status", *where, "--json")[1])["files"] == 5
    (shop / "shop" / "vat.py").write_text("def add_vat(x):\n    return x\n")
    held, release = threading.Event(), threading.Event()

    def hold() -> None:  # another process's pass (flock: another open file conflicts in this process too)
        with index_lock(tmp_path / "idx"):
            held.set()
            release.wait(10)

    holder = threading.Thread(target=hold)
    holder.start()
    held.wait(5)
    threading.Timer(0.5, release.set).start()
    code, out, err = run(capsys, "status", *where, "--json")
    holder.join()
    assert code == 0 and json.loads(out)["files"] == 6  # the new file, before it claims to be fresh
    assert "waiting for another codeahead process to finish its index pass" in err


def test_a_focus_on_a_skipped_file_says_why_it_is_not_indexed(shop, tmp_path, capsys):
    (shop / "huge.py").write_text("X = 1\n" * 300_000)
    code, _, err = run(capsys, "context", "--focus", "huge.py:3", "--workspace", str(shop),
                       "--index-dir", str(tmp_path / "idx"))
    assert code == EXIT_BAD_INPUT and "huge.py is not indexed: too_large (" in err and "no node matches" not in err


def test_moves_recorded_by_commands_side_by_side_are_all_learned(shop, tmp_path, capsys):
    where = ["--workspace", str(shop), "--index-dir", str(tmp_path / "idx")]
    assert run(capsys, "index", *where)[0] == 0
    paths = ["shop/__init__.py", "shop/cart.py", "shop/tax.py", "shop/legacy.py", "tests/test_cart.py"]
    env_path = str(Path(__file__).resolve().parents[1])
    procs = [subprocess.Popen([sys.executable, "-m", "server.cli", "event", "file_opened", "--task", f"Q{i}",
                               "--data", json.dumps({"path": path}), *where], cwd=env_path,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for i, path in enumerate(paths)]
    assert all(p.wait(timeout=120) == 0 for p in procs), [p.communicate()[1] for p in procs]
    model = json.loads(run(capsys, "stats", *where, "--json")[1])["prediction"]
    assert model["files_known"] == len(paths)  # each process merged its move into what the others saved


def test_task_shows_its_text_as_written_and_says_when_at_is_past_its_log(shop, tmp_path, capsys):
    where = ("--workspace", str(shop), "--index-dir", str(tmp_path / "idx"))
    assert run(capsys, "event", "task_started", "--task", "T", "--data", '{"title": "tâche 🚀"}', *where)[0] == 0
    out = run(capsys, "task", "T", *where)[1]
    assert '"title": "tâche 🚀"' in out and "(the task's log" not in out
    out = run(capsys, "task", "T", "--at", "99", *where)[1]
    assert "(the task's log ends at #1: this is its state now)" in out
    answer = json.loads(run(capsys, "task", "T", "--at", "99", *where, "--json")[1])
    assert answer["note"] == "the task's log ends at #1: this is its state now"
    assert "note" not in json.loads(run(capsys, "task", "T", "--at", "1", *where, "--json")[1])
