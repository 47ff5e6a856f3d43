"""The multi-tier cache: keys, compression, TTL, eviction order, exact invalidation (memory and SQLite)."""

from __future__ import annotations

import os
import sqlite3
import tempfile
import threading
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from indexer.cache import (INDEX_DEP, MISSING, MemoryBackend, SqliteBackend, TierConfig, TieredCache,
                           index_versions, make_key, task_dep, workspace_id)
from indexer.cache.backends import Meta
from indexer.cache.keys import engine_digest
from indexer.cache.entry import COMPRESS_RATIO, Entry, decode_value, encode_value
from indexer.cache.tiers import eviction_order
from indexer.workspace import Workspace
from tests.conftest import write_tree


class FakeClock:
    """A clock the test moves by hand."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def make_backend(kind: str, folder: Path):
    return MemoryBackend() if kind == "memory" else SqliteBackend(folder / "cache.db")


BACKENDS = ["memory", "sqlite"]


def versions_of(table: dict[str, int]):
    return lambda paths: {p: table[p] for p in paths if p in table}


# --------------------------------------------------------------------------- #
# keys and entries
# --------------------------------------------------------------------------- #

def test_keys_are_deterministic_normalised_and_namespaced():
    ws = workspace_id("/tmp/some/repo")
    a = make_key(ws, "context", {"query": "  parse   the\nconfig ", "budget": 2000, "focus": None,
                                 "paths": ["a.py", "b.py"]})
    b = make_key(ws, "context", {"paths": ["a.py", "b.py"], "budget": 2000.0, "query": "parse the config"})
    assert a == b
    assert a.startswith(f"v1.{engine_digest()}:{ws}:context:")
    assert make_key(ws, "search", {"query": "parse the config", "budget": 2000, "paths": ["a.py", "b.py"]}) != a
    assert make_key(workspace_id("/tmp/other"), "context", {"query": "parse the config", "budget": 2000,
                                                            "paths": ["a.py", "b.py"]}) != a
    assert make_key(ws, "context", {"query": "parse the config", "budget": 2001, "paths": ["a.py", "b.py"]}) != a
    assert workspace_id("/x", identity="git@host:team/repo") == workspace_id("/y", identity="git@host:team/repo")


def test_compression_is_kept_only_when_it_saves_ten_percent():
    text = "def handler(request):\n    return render(request, 'page.html')\n" * 200
    payload, compressed = encode_value(text)
    assert compressed and len(payload) < COMPRESS_RATIO * len(text)
    assert decode_value(payload, compressed) == text
    noise = os.urandom(4096)
    payload, compressed = encode_value(noise)
    assert not compressed and decode_value(payload, compressed) == noise
    entry = Entry.build("k", {"text": text, "n": 3}, now=1.0, ttl=10.0, deps={"a.py": 2, task_dep("t1"): 7})
    again = Entry.unpack(entry.pack())
    assert again.value() == {"text": text, "n": 3} and again.deps == entry.deps and again.size == entry.size
    assert entry.task_seq == {"t1": 7}


# --------------------------------------------------------------------------- #
# TTL and eviction
# --------------------------------------------------------------------------- #

@pytest.mark.parametrize("kind", BACKENDS)
def test_ttl_expiry_follows_the_injected_clock(kind, tmp_path):
    clock = FakeClock()
    cache = TieredCache(make_backend(kind, tmp_path), clock=clock, refresh=False,
                        tiers=[TierConfig("results", 100.0, 1 << 20)])
    cache.put("results", "q", ["a.py:1-10"])
    clock.now += 99.0
    assert cache.get("results", "q") == ["a.py:1-10"]
    clock.now += 1.0
    assert cache.get("results", "q") is MISSING
    stats = cache.stats()["tiers"]["results"]
    assert (stats["hits"], stats["misses"], stats["expired"], stats["entries"]) == (1, 1, 1, 0)
    cache.put("results", "short", 1, ttl=5.0)
    clock.now += 5.0
    assert cache.get("results", "short") is MISSING
    cache.close()


def test_eviction_order_formula_weighs_recency_and_frequency():
    metas = [Meta("often-but-older", 10, 5, 1.0), Meta("never-hit", 10, 0, 2.0), Meta("newest", 10, 0, 3.5)]
    order = [m.key for m in eviction_order(metas, 4.0, 0.6, 0.4)]
    # recency (last-1)/3, frequency log1p(h)/log1p(5): scores 0.4, 0.2, 0.5
    assert order == ["never-hit", "often-but-older", "newest"]
    assert [m.key for m in eviction_order(metas, 4.0, 1.0, 0.0)][0] == "often-but-older"  # pure LRU differs


@pytest.mark.parametrize("kind", BACKENDS)
def test_eviction_within_byte_limit_keeps_frequent_entries(kind, tmp_path):
    clock = FakeClock(0.0)
    blob = lambda: os.urandom(1000)  # incompressible: each payload is ~1003 bytes
    cache = TieredCache(make_backend(kind, tmp_path), clock=clock, refresh=False,
                        tiers=[TierConfig("module", 3600.0, 3100)])
    cache.put("module", "A", blob())
    clock.now = 1.0
    for _ in range(5):
        assert cache.get("module", "A") is not MISSING
    clock.now = 2.0
    cache.put("module", "B", blob())
    clock.now = 3.0
    cache.put("module", "C", blob())
    clock.now = 4.0
    cache.put("module", "D", blob())
    present = {k for k in "ABCD" if cache.backend.get("module", k) is not None}
    assert present == {"A", "C", "D"}  # LRU would have evicted A
    stats = cache.stats()["tiers"]["module"]
    assert stats["evictions"] == 1 and stats["bytes"] <= 3100 and stats["entries"] == 3
    cache.put("module", "huge", os.urandom(5000))
    assert cache.backend.get("module", "huge") is None and cache.stats()["tiers"]["module"]["too_large"] == 1
    cache.close()


# --------------------------------------------------------------------------- #
# exact invalidation
# --------------------------------------------------------------------------- #

@pytest.mark.parametrize("kind", BACKENDS)
def test_a_changed_file_version_is_never_served_whatever_the_ttl(kind, tmp_path):
    files = {"a.py": 1, "b.py": 1}
    cache = TieredCache(make_backend(kind, tmp_path), versions=versions_of(files), refresh=False)
    cache.put("prompt", "answer", "built from a.py v1", {"a.py": 1, "b.py": 1})
    assert cache.get("prompt", "answer") == "built from a.py v1"
    files["a.py"] = 2  # nobody called invalidate_paths: the read-side check still refuses it
    assert cache.get("prompt", "answer") is MISSING
    assert cache.stats()["tiers"]["prompt"]["stale"] == 1
    cache.put("prompt", "answer2", "x", {"gone.py": 1})
    assert cache.get("prompt", "answer2") is MISSING  # a deleted file never matches
    cache.close()


@pytest.mark.parametrize("kind", BACKENDS)
def test_invalidate_paths_drops_exactly_the_dependents(kind, tmp_path):
    cache = TieredCache(make_backend(kind, tmp_path), versions=lambda ps: {p: 1 for p in ps}, refresh=False)
    cache.put("prompt", "on-a", 1, {"a.py": 1})
    cache.put("context", "on-a-b", 2, {"a.py": 1, "b.py": 1})
    cache.put("results", "on-b", 3, {"b.py": 1})
    cache.put("module", "on-c", 4, {"c.py": 1})
    cache.put("module", "no-deps", 5)
    assert cache.invalidate_paths(["a.py"]) == 2
    remaining = {(t, k) for t in cache.tiers for k in ("on-a", "on-a-b", "on-b", "on-c", "no-deps")
                 if cache.backend.get(t, k) is not None}
    assert remaining == {("results", "on-b"), ("module", "on-c"), ("module", "no-deps")}
    assert cache.backend.dependents(["a.py"]) == set()
    assert cache.backend.dependents(["b.py"]) == {("results", "on-b")}
    assert cache.stats()["tiers"]["context"]["invalidated"] == 1
    cache.close()


def test_sqlite_dependency_lookup_uses_the_path_index(tmp_path):
    backend = SqliteBackend(tmp_path / "c.db")
    plan = " ".join(row[-1] for row in backend._conn.execute(
        "EXPLAIN QUERY PLAN SELECT tier, key FROM cache_deps WHERE path=?", ("a.py",)))
    assert "USING PRIMARY KEY" in plan or "USING INDEX" in plan, plan
    backend.close()


def test_sqlite_entries_survive_a_restart_and_share_a_passed_connection(tmp_path):
    cache = TieredCache(SqliteBackend(tmp_path / "c.db"), versions=lambda ps: {p: 3 for p in ps}, refresh=False)
    cache.put("module", "m", {"summary": "x" * 500}, {"m.py": 3})
    assert cache.get("module", "m") is not MISSING  # counters batched, flushed on close
    cache.close()
    again = TieredCache(SqliteBackend(tmp_path / "c.db"), versions=lambda ps: {p: 3 for p in ps}, refresh=False)
    assert again.get("module", "m") == {"summary": "x" * 500}
    assert again.backend.get("module", "m").hits == 2
    assert again.stats()["tiers"]["module"]["bytes"] > 0
    again.close()
    conn = sqlite3.connect(tmp_path / "index.db")
    conn.execute("CREATE TABLE other (x)")
    shared = TieredCache(SqliteBackend(conn), refresh=False)
    shared.put("prompt", "p", "hello")
    assert shared.get("prompt", "p") == "hello"
    shared.close()
    assert conn.execute("SELECT count(*) FROM cache_entries").fetchone()[0] == 1  # connection left open


def test_entries_follow_a_real_index_pass(tmp_path):
    root = write_tree(tmp_path / "ws", {"pkg/a.py": "def f():\n    return 1\n", "pkg/b.py": "def g():\n    pass\n"})
    with Workspace(root, index_dir=tmp_path / "idx") as ws:
        ws.index()
        versions = lambda ps: index_versions(ws.reader(), ps)
        cache = TieredCache(SqliteBackend(tmp_path / "cache.db"), versions=versions, refresh=False)
        deps = versions(["pkg/a.py", INDEX_DEP])
        cache.put("context", "ctx-a", "context of f", deps)
        cache.put("module", "sum-b", "summary of b", versions(["pkg/b.py"]))
        assert cache.get("context", "ctx-a") == "context of f"
        (root / "pkg/a.py").write_text("def f():\n    return 2\n")
        before = versions(["pkg/a.py", "pkg/b.py"])
        ws.index()
        changed = [p for p, v in versions(["pkg/a.py", "pkg/b.py"]).items() if before[p] != v]
        assert changed == ["pkg/a.py"]
        assert cache.get("context", "ctx-a") is MISSING  # version and generation moved
        assert cache.invalidate_paths(changed) == 0  # already refused and dropped on read
        assert cache.get("module", "sum-b") == "summary of b"
        cache.close()


# --------------------------------------------------------------------------- #
# the property: no tier ever serves an entry built from an older file version
# --------------------------------------------------------------------------- #

FILES = ["a.py", "b.py", "c.py", "d.py"]
TIERS = [TierConfig("prompt", 50.0, 600), TierConfig("module", 30.0, 900),
         TierConfig("context", 20.0, 1200), TierConfig("results", 10.0, 2000)]
tier_names = st.sampled_from([t.name for t in TIERS])
keys = st.sampled_from(["k0", "k1", "k2", "k3", "k4"])
operations = st.lists(st.one_of(
    st.tuples(st.just("bump"), st.sampled_from(FILES), st.booleans()),  # edit; maybe invalidate_paths
    st.tuples(st.just("put"), tier_names, keys, st.sets(st.sampled_from(FILES), max_size=3)),
    st.tuples(st.just("late_put"), tier_names, keys, st.sampled_from(FILES)),  # build raced an edit
    st.tuples(st.just("get"), tier_names, keys),
    st.tuples(st.just("tick"), st.floats(0, 15)),
), max_size=60)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=operations, kind=st.sampled_from(BACKENDS))
def test_no_tier_ever_serves_an_older_file_version(ops, kind):
    files = {f: 1 for f in FILES}
    clock = FakeClock()
    with tempfile.TemporaryDirectory() as folder:
        cache = TieredCache(make_backend(kind, Path(folder)), tiers=TIERS, versions=versions_of(files),
                            clock=clock, refresh=False)
        for op in ops:
            if op[0] == "bump":
                files[op[1]] += 1
                if op[2]:
                    cache.invalidate_paths([op[1]])
            elif op[0] == "put":
                built = {f: files[f] for f in sorted(op[3])}  # the value is what the build read
                cache.put(op[1], op[2], {"built": built, "pad": "x" * 150}, built)
            elif op[0] == "late_put":
                read = {op[3]: files[op[3]]}
                files[op[3]] += 1  # the file changed while the value was being built
                cache.put(op[1], op[2], {"built": read, "pad": "x" * 150}, read)
            elif op[0] == "get":
                value = cache.get(op[1], op[2])
                if value is not MISSING:
                    assert all(files[f] == v for f, v in value["built"].items()), (value, files)
            else:
                clock.now += op[1]
        for tier in cache.tiers:  # bytes never exceed a tier's limit
            assert cache.backend.usage(tier)[1] <= cache.tiers[tier].max_bytes
        cache.close()


# --------------------------------------------------------------------------- #
# get_or_build, refresh, stats
# --------------------------------------------------------------------------- #

def test_get_or_build_and_background_refresh_of_hot_entries():
    clock = FakeClock(0.0)
    files = {"a.py": 1}
    builds = []
    started = threading.Event()

    def build():
        builds.append(files["a.py"])
        started.set()
        return f"summary@{files['a.py']}"

    cache = TieredCache(clock=clock, versions=versions_of(files), tiers=[TierConfig("module", 100.0, 1 << 20)])
    deps = lambda: {"a.py": files["a.py"]}
    assert cache.get_or_build("module", "m", build, deps) == "summary@1"
    clock.now = 10.0
    assert cache.get_or_build("module", "m", build, deps) == "summary@1"
    assert builds == [1]
    clock.now = 85.0  # past 80% of the TTL, and the entry is hot (2 hits)
    assert cache.get("module", "m") == "summary@1"
    assert started.wait(5)
    cache.drain_refresh()
    assert builds == [1, 1] and cache.stats()["refresh"]["done"] == 1
    clock.now = 150.0  # the original would have expired at 100; the refreshed one lives to 185
    assert cache.get("module", "m") == "summary@1"
    files["a.py"] = 2
    assert cache.get_or_build("module", "m", build, deps) == "summary@2"
    cache.close()


def test_stats_latency_and_hit_rate_history():
    clock = FakeClock(0.0)
    cache = TieredCache(clock=clock, refresh=False, history_interval=60.0)
    cache.put("prompt", "p", "x")
    for _ in range(3):
        cache.get("prompt", "p")
    cache.get("prompt", "absent")
    clock.now = 60.0
    cache.get("results", "absent")  # crosses the interval: a history point is taken
    stats = cache.stats()["tiers"]
    assert stats["prompt"]["hits"] == 3 and stats["prompt"]["misses"] == 1 and stats["prompt"]["hit_rate"] == 0.75
    assert 0 < stats["prompt"]["latency_us"]["p50"] <= stats["prompt"]["latency_us"]["p95"]
    history = cache.history()
    assert len(history) == 1 and history[0][0] == 60.0
    assert history[0][1]["prompt"] == 0.75 and history[0][1]["results"] == 0.0 and history[0][1]["module"] is None
    with pytest.raises(KeyError, match="unknown cache tier"):
        cache.get("L9", "x")
    cache.put("module", "needs-versions", 1, {"a.py": 1})
    with pytest.raises(ValueError, match="needs current versions"):
        cache.get("module", "needs-versions")
    cache.close()


def test_keys_change_with_the_engine_code(tmp_path, monkeypatch):
    """An answer cached by other ranking or packing code (an older install, a teammate's Redis) is never read."""
    from indexer.cache import keys

    before = make_key("ws", "context", {"query": "q"})
    assert keys.engine_digest() in before
    package = tmp_path / "indexer"
    package.mkdir()
    (package / "rank.py").write_text("WEIGHT = 1\n")
    monkeypatch.setattr(keys, "__file__", str(package / "cache" / "keys.py"))
    keys.engine_digest.cache_clear()
    try:
        first = keys.engine_digest()
        (package / "rank.py").write_text("WEIGHT = 2\n")
        keys.engine_digest.cache_clear()
        assert keys.engine_digest() != first
        assert make_key("ws", "context", {"query": "q"}) != before
    finally:
        keys.engine_digest.cache_clear()
