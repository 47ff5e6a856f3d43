"""The cache dashboard and /metrics text: a real headless chromium must draw the plots."""

from __future__ import annotations

import functools
import http.server
import re
import shutil
import subprocess
import threading

import pytest

from indexer.cache import TierConfig, TieredCache
from indexer.cache.metrics import dashboard_html, render_prometheus

CHROMIUM = next((shutil.which(name) for name in ("chromium", "chromium-browser", "google-chrome")
                 if shutil.which(name)), None)
#: Seconds chromium may take to start, load and dump the page.
BROWSER_TIMEOUT = 90


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def busy_cache() -> TieredCache:
    """A cache with a few minutes of traffic on every tier, sampled once a minute."""
    clock = FakeClock()
    cache = TieredCache(clock=clock, refresh=False, history_interval=60.0,
                        tiers=[TierConfig(n, 3600.0, 1 << 20) for n in ("prompt", "module", "context", "results")])
    for minute in range(6):
        for i, tier in enumerate(cache.tiers):
            cache.put(tier, f"k{minute}", "value " * 50)
            for repeat in range(i + minute):
                cache.get(tier, f"k{minute}")
            cache.get(tier, "absent")
        clock.now += 60.0
        cache.sample_history()
    return cache


def test_prometheus_text_parses_with_and_without_the_client():
    parser = pytest.importorskip("prometheus_client.parser", reason="prometheus-client is not installed")
    cache = busy_cache()
    by_client = render_prometheus(cache.stats(), use_client=True)
    by_hand = render_prometheus(cache.stats(), use_client=False)
    for text in (by_client, by_hand):
        families = {f.name: f for f in parser.text_string_to_metric_families(text)}
        hits = {s.labels["tier"]: s.value for s in families["codeahead_cache_hits"].samples}
        assert hits == {t: float(s["hits"]) for t, s in cache.stats()["tiers"].items()}
        assert families["codeahead_cache_hits"].type == "counter"
        quantiles = {s.labels["quantile"] for s in families["codeahead_cache_get_latency_microseconds"].samples}
        assert quantiles == {"0.5", "0.95"}
    shared_stats = {"local": cache.stats(), "shared": cache.stats(), "shared_up": False}
    text = render_prometheus(shared_stats, use_client=False)
    assert 'layer="shared"' in text and "codeahead_cache_shared_up 0.0" in text


def test_dashboard_is_self_contained():
    page = dashboard_html([(0.0, {"prompt": 0.5})], [(0.0, 0.25)])
    assert "<script src" not in page and "http://" not in page.replace("http://www.w3.org/2000/svg", "")
    hostile = dashboard_html([(0.0, {"</script><b>x": 0.5})], [])
    assert "</script><b>" not in hostile


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not on PATH: apt-get install -y chromium")
def test_headless_chromium_draws_the_plots(tmp_path):
    cache = busy_cache()
    prediction = [(60.0 * i, 0.4 + 0.05 * i) for i in range(1, 7)]
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "dashboard.html").write_text(dashboard_html(cache.history(), prediction), encoding="utf-8")
    handler = functools.partial(QuietHandler, directory=str(tmp_path / "site"))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{httpd.server_address[1]}/dashboard.html"
        done = subprocess.run(
            [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
             "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run",
             f"--user-data-dir={tmp_path / 'profile'}", "--dump-dom", url],
            capture_output=True, text=True, timeout=BROWSER_TIMEOUT)
    finally:
        httpd.shutdown()
        httpd.server_close()
    dom = done.stdout
    assert done.returncode == 0 and "<svg" in dom, done.stderr[-2000:]
    assert re.search(r'<body[^>]*data-plotted="true"', dom), dom[:2000]
    assert re.search(r'<svg id="hit-rate"[^>]*data-drawn="4"', dom)
    assert re.search(r'<svg id="prediction"[^>]*data-drawn="1"', dom)
    paths = re.findall(r'<path class="series" d="([^"]+)"[^>]*data-series="([^"]+)"', dom)
    assert {name for _, name in paths} == {"prompt", "module", "context", "results", "accuracy"}
    assert all(d.count("L") >= 4 for d, _ in paths)  # every series drew a line through its points


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    """Serves the page without logging every request to stderr."""

    def log_message(self, format, *args) -> None:
        pass
