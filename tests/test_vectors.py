"""The SQLite connection helper and the sqlite-vec vector index, on real database files."""

from __future__ import annotations

import numpy as np
import pytest

from indexer import sqlite
from indexer.search.vectors import VectorIndex

DIM = 4


def _vec(*xs: float) -> np.ndarray:
    return np.array(xs, dtype=np.float32)


@pytest.fixture
def conn(tmp_path):
    c = sqlite.connect(tmp_path / "index.db")
    yield c
    c.close()


@pytest.fixture
def index(conn):
    idx = VectorIndex(conn, DIM)
    idx.ensure("test-embedder", DIM)
    return idx


def test_connect_loads_sqlite_vec_and_fts5(conn):
    assert sqlite.vector_support()
    assert conn.execute("SELECT vec_version()").fetchone()[0].startswith("v0.1")
    conn.execute("CREATE VIRTUAL TABLE docs USING fts5(body)")
    conn.execute("INSERT INTO docs(body) VALUES ('parse http header'), ('open file')")
    assert conn.execute("SELECT body FROM docs WHERE docs MATCH 'header'").fetchall() == [("parse http header",)]


def test_connect_sets_pragmas(conn):
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    assert conn.execute("PRAGMA busy_timeout").fetchone()[0] == sqlite.BUSY_TIMEOUT_MS
    assert conn.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL


def test_connect_without_vectors_has_no_vec_functions(tmp_path):
    c = sqlite.connect(tmp_path / "plain.db", vectors=False)
    with pytest.raises(sqlite.OperationalError):
        c.execute("SELECT vec_version()")
    c.close()


def test_error_aliases_catch_the_driver_errors(conn):
    conn.execute("CREATE TABLE t(id INTEGER PRIMARY KEY)")
    conn.execute("INSERT INTO t VALUES (1)")
    with pytest.raises(sqlite.IntegrityError):
        conn.execute("INSERT INTO t VALUES (1)")
    assert issubclass(sqlite.IntegrityError, sqlite.DatabaseError)


def test_readonly_connection_reads_vectors_but_cannot_write(tmp_path):
    path = tmp_path / "index.db"
    writer = sqlite.connect(path)
    idx = VectorIndex(writer, DIM)
    idx.ensure("e", DIM)
    idx.upsert([7], np.array([_vec(1, 0, 0, 0)]))
    writer.commit()
    reader = sqlite.connect(path, readonly=True)
    readers_index = VectorIndex(reader, DIM)
    assert readers_index.ensure("e", DIM) is False
    assert [n for n, _ in readers_index.knn(_vec(1, 0, 0, 0), k=1)] == [7]
    with pytest.raises(sqlite.OperationalError, match="readonly"):
        reader.execute("DELETE FROM node_vectors")
    reader.close()
    writer.close()


def test_knn_ranks_by_cosine_not_euclidean(index):
    # Node 1 points the same way as the query but is long; node 2 is close in L2 but at 45 degrees.
    index.upsert([1, 2, 3], np.array([_vec(10, 1, 0, 0), _vec(0.5, 0.5, 0, 0), _vec(0, 0, 1, 0)]))
    hits = index.knn(_vec(1, 0, 0, 0), k=3)
    assert [node for node, _ in hits] == [1, 2, 3]
    sims = dict(hits)
    assert sims[1] == pytest.approx(10 / np.sqrt(101), abs=1e-5)
    assert sims[2] == pytest.approx(np.sqrt(0.5), abs=1e-5)
    assert sims[3] == pytest.approx(0.0, abs=1e-5)


def test_knn_limits_to_k(index):
    index.upsert(list(range(10)), np.eye(DIM, dtype=np.float32)[np.arange(10) % DIM])
    assert len(index.knn(_vec(1, 0, 0, 0), k=3)) == 3
    assert index.knn(_vec(1, 0, 0, 0), k=0) == []


def test_delete_removes_vectors(index):
    index.upsert([1, 2], np.array([_vec(1, 0, 0, 0), _vec(0, 1, 0, 0)]))
    index.delete([1, 99])
    assert index.ids() == {2}
    assert [n for n, _ in index.knn(_vec(1, 0, 0, 0), k=5)] == [2]


def test_upsert_replaces_existing_vector(index):
    index.upsert([1, 2], np.array([_vec(1, 0, 0, 0), _vec(0, 1, 0, 0)]))
    index.upsert([1], np.array([_vec(0, 0, 0, 1)]))
    assert index.count() == 2
    assert index.knn(_vec(0, 0, 0, 1), k=1)[0] == (1, pytest.approx(1.0, abs=1e-5))


def test_upsert_skips_zero_vectors(index):
    # sqlite-vec returns a NULL distance for zero vectors and would rank them first.
    stored = index.upsert([1, 2], np.array([_vec(0, 0, 0, 0), _vec(0, 1, 0, 0)]))
    assert stored == 1
    assert index.ids() == {2}


def test_upsert_rejects_wrong_shape(index):
    with pytest.raises(ValueError, match="width 4"):
        index.upsert([1], np.zeros((1, 3), dtype=np.float32))
    with pytest.raises(ValueError, match="2 vectors"):
        index.upsert([1, 2], np.zeros((1, DIM), dtype=np.float32))


def test_ensure_keeps_vectors_for_same_embedder_across_connections(tmp_path):
    path = tmp_path / "index.db"
    first = sqlite.connect(path)
    idx = VectorIndex(first, DIM)
    assert idx.ensure("e", DIM) is False
    idx.upsert([1], np.array([_vec(1, 0, 0, 0)]))
    first.commit()
    first.close()
    second = sqlite.connect(path)
    again = VectorIndex(second, DIM)
    assert again.ensure("e", DIM) is False
    assert again.ids() == {1}
    second.close()


def test_ensure_resets_when_embedder_changes(index):
    index.upsert([1, 2], np.array([_vec(1, 0, 0, 0), _vec(0, 1, 0, 0)]))
    assert index.ensure("other-embedder", 8) is True
    assert index.count() == 0
    assert index.dim == 8
    index.upsert([5], np.ones((1, 8), dtype=np.float32))
    assert index.knn(np.ones(8, dtype=np.float32), k=1)[0][0] == 5


def test_bad_table_name_is_refused(conn):
    with pytest.raises(ValueError, match="identifier"):
        VectorIndex(conn, DIM, table="x; DROP TABLE y")
