"""The shared Redis tier against a real redis-server: two processes, an outage, a restart, no stale answers."""

from __future__ import annotations

import json
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("redis", reason="the redis package is not installed: pip install codeahead[redis]")
REDIS_SERVER = shutil.which("redis-server")
pytestmark = pytest.mark.skipif(REDIS_SERVER is None,
                                reason="redis-server is not on PATH: apt-get install -y redis-server")

import redis  # noqa: E402

from indexer.cache import MISSING, TieredCache  # noqa: E402
from indexer.cache.shared import SharedCache  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
#: Seconds to wait for redis-server to answer after a start.
START_TIMEOUT = 10.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class RedisServer:
    """A real redis-server on a loopback port, with no persistence, that a test can kill and restart."""

    def __init__(self, folder: Path) -> None:
        self.port = free_port()
        self.folder = folder
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(self.folder), "--daemonize", "no"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        client = redis.Redis(port=self.port, socket_timeout=0.5, socket_connect_timeout=0.5)
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            try:
                client.ping()
                return
            except redis.ConnectionError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise RuntimeError(f"redis-server did not start on port {self.port}")
                time.sleep(0.02)

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait(timeout=10)

    def raw(self) -> redis.Redis:
        return redis.Redis(port=self.port, socket_timeout=2)


@pytest.fixture
def server(tmp_path):
    srv = RedisServer(tmp_path)
    srv.start()
    yield srv
    if srv.proc.poll() is None:
        srv.proc.send_signal(signal.SIGCONT)
        srv.kill()


def shared_cache(url: str, files: dict[str, int], namespace: str = "test") -> SharedCache:
    versions = lambda ps: {p: files[p] for p in ps if p in files}
    return SharedCache(TieredCache(refresh=False, versions=versions), url, namespace=namespace, versions=versions,
                       backoff_initial=0.05, backoff_max=0.2)


PEER = r"""
import json, sys
from indexer.cache import MISSING, TieredCache
from indexer.cache.shared import SharedCache
url, mode, versions = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
current = lambda ps: {p: versions[p] for p in ps if p in versions}
cache = SharedCache(TieredCache(refresh=False, versions=current), url, namespace="team", versions=current)
out = {"up": cache.shared_up}
if mode == "write":
    cache.put("context", "ctx:a", {"text": "def f(): return 1\n" * 300}, {"a.py": versions["a.py"]})
    cache.incr_counts("next-file", {"a.py->b.py": 2, "a.py->c.py": 1})
elif mode == "read":
    value = cache.get("context", "ctx:a")
    out["value"] = None if value is MISSING else value["text"][:17]
    out["counts"] = cache.get_counts("next-file")
elif mode == "invalidate":
    out["dropped"] = cache.invalidate_paths(["a.py"])
print(json.dumps(out))
"""


def run_peer(url: str, mode: str, versions: dict[str, int]) -> dict:
    done = subprocess.run([sys.executable, "-c", PEER, url, mode, json.dumps(versions)], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_two_processes_share_entries_and_prediction_counts(server):
    assert run_peer(server.url, "write", {"a.py": 1}) == {"up": True}
    read = run_peer(server.url, "read", {"a.py": 1})
    assert read == {"up": True, "value": "def f(): return 1", "counts": {"a.py->b.py": 2, "a.py->c.py": 1}}
    assert run_peer(server.url, "read", {"a.py": 2})["value"] is None  # newer file: the shared entry is refused
    assert run_peer(server.url, "invalidate", {"a.py": 1})["dropped"] == 1
    assert run_peer(server.url, "read", {"a.py": 1})["value"] is None  # gone from Redis for everyone


def test_a_redis_restart_mid_run_is_survived_without_errors_or_stale_answers(server):
    files = {f"m{i}.py": 1 for i in range(6)}
    cache = shared_cache(server.url, files)
    served = 0
    for step in range(240):
        path = f"m{step % 6}.py"
        key = f"ctx:{path}"
        if step == 60:
            server.kill()
        if step == 150:
            server.start()  # same port, empty (no persistence)
        if step % 7 == 3:
            files[path] += 1
            cache.invalidate_paths([path])
        value = cache.get("context", key)
        if value is MISSING:
            cache.put("context", key, {"path": path, "version": files[path]}, {path: files[path]})
        else:
            served += 1
            assert value == {"path": path, "version": files[path]}
        if 150 <= step < 170:
            time.sleep(0.02)  # let the reconnect backoff elapse
    assert served > 100  # the local tier kept serving through the outage
    assert cache.shared_up and cache.outages >= 1 and cache.reconnects >= 1
    other = shared_cache(server.url, files)  # a second server with an empty local tier
    hits = sum(other.get("context", f"ctx:m{i}.py") is not MISSING for i in range(6))
    assert hits >= 1  # entries written after the restart are shared again
    cache.close()
    other.close()


def test_an_invalidation_made_while_redis_was_unreachable_never_lets_a_stale_entry_through(server):
    files = {"a.py": 1}
    cache = shared_cache(server.url, files)
    cache.put("module", "sum:a", "summary of a v1", {"a.py": 1})
    raw = server.raw()
    entry_keys = raw.keys("test:e:module:*")
    assert len(entry_keys) == 1
    server.proc.send_signal(signal.SIGSTOP)  # unreachable, but keeps its data
    try:
        files["a.py"] = 2
        started = time.monotonic()
        cache.invalidate_paths(["a.py"])  # Redis times out: remembered, no error
        assert cache.get("module", "sum:a") is MISSING
        assert not cache.shared_up and time.monotonic() - started < 2.0
        cache.incr_counts("hits", {"a.py": 1})
        assert cache.get_counts("hits") == {"a.py": 1}
    finally:
        server.proc.send_signal(signal.SIGCONT)
    assert raw.exists(*entry_keys) == 1  # the stale entry is still in Redis ...
    fresh = shared_cache(server.url, files)
    assert fresh.get("module", "sum:a") is MISSING  # ... and refused by the version check on read
    time.sleep(0.3)
    cache.get("module", "other")  # after the backoff: reconnect, replay the invalidation and the counts
    assert cache.shared_up and raw.exists(*entry_keys) == 0
    assert fresh.get_counts("hits") == {"a.py": 1}
    cache.close()
    fresh.close()
