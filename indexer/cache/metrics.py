"""Cache stats as Prometheus text exposition, and a self-contained HTML dashboard of hit rates over time."""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

#: Content type of the text exposition format (what ``/metrics`` should answer with).
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_PREFIX = "codeahead_cache"
#: (stat field, metric suffix, type, help) of the per-tier series.
_TIER_SERIES: tuple[tuple[str, str, str, str], ...] = (
    ("hits", "hits", "counter", "Cache lookups served from the tier."),
    ("misses", "misses", "counter", "Cache lookups the tier could not serve."),
    ("evictions", "evictions", "counter", "Entries evicted to stay within the tier's byte limit."),
    ("expired", "expired", "counter", "Entries dropped on read because their TTL had passed."),
    ("stale", "stale", "counter", "Entries refused on read because a file they were built from changed."),
    ("invalidated", "invalidated", "counter", "Entries dropped through the dependency index after file changes."),
    ("hit_rate", "hit_ratio", "gauge", "Hits over lookups since start."),
    ("bytes", "bytes", "gauge", "Bytes of entries stored in the tier."),
    ("entries", "entries", "gauge", "Entries stored in the tier."),
    ("max_bytes", "max_bytes", "gauge", "Byte limit of the tier."),
)
_LATENCY = ("get_latency_microseconds", "Latency of a cache get, by quantile over recent lookups.")


def _layers(stats: Mapping[str, Any]) -> list[tuple[str, Mapping[str, Any]]]:
    """(layer, TieredCache.stats()) pairs from a TieredCache's or a SharedCache's stats."""
    if "tiers" in stats:
        return [("local", stats)]
    return [(layer, stats[layer]) for layer in ("local", "shared") if layer in stats]


def _samples(stats: Mapping[str, Any]) -> list[tuple[str, str, str, list[tuple[dict[str, str], float]]]]:
    """(name, type, help, [(labels, value)]) of every metric family, independent of the renderer."""
    families = []
    layers = _layers(stats)
    for field, suffix, kind, doc in _TIER_SERIES:
        rows = [({"layer": layer, "tier": tier}, float(t[field]))
                for layer, s in layers for tier, t in s["tiers"].items()]
        families.append((f"{_PREFIX}_{suffix}", kind, doc, rows))
    rows = [({"layer": layer, "tier": tier, "quantile": q}, float(t["latency_us"][p]))
            for layer, s in layers for tier, t in s["tiers"].items() for q, p in (("0.5", "p50"), ("0.95", "p95"))]
    families.append((f"{_PREFIX}_{_LATENCY[0]}", "gauge", _LATENCY[1], rows))
    if "shared_up" in stats:
        families.append((f"{_PREFIX}_shared_up", "gauge", "1 when the shared Redis tier is reachable.",
                         [({}, float(stats["shared_up"]))]))
    return families


def render_prometheus(stats: Mapping[str, Any], *, use_client: bool | None = None) -> str:
    """The stats of a ``TieredCache`` or ``SharedCache`` as Prometheus text (prometheus_client when installed)."""
    families = _samples(stats)
    if use_client is not False:
        try:
            return _render_with_client(families)
        except ImportError:
            if use_client:
                raise
    return _render_by_hand(families)


def _render_with_client(families) -> str:
    from prometheus_client import CollectorRegistry, generate_latest
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

    class _Collector:
        def collect(self):
            for name, kind, doc, rows in families:
                labels = sorted({k for row_labels, _ in rows for k in row_labels})
                cls = CounterMetricFamily if kind == "counter" else GaugeMetricFamily
                family = cls(name, doc, labels=labels)
                for row_labels, value in rows:
                    family.add_metric([row_labels[k] for k in labels], value)
                yield family

    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Collector())
    return generate_latest(registry).decode("utf-8")


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\"", "\\\"").replace("\n", "\\n")


def _number(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value))


def _render_by_hand(families) -> str:
    """The text exposition format written directly (no prometheus_client)."""
    lines = []
    for name, kind, doc, rows in families:
        sample = f"{name}_total" if kind == "counter" else name  # as prometheus_client writes format 0.0.4
        lines.append(f"# HELP {sample} {doc}")
        lines.append(f"# TYPE {sample} {kind}")
        for labels, value in rows:
            body = ",".join(f'{k}="{_escape(v)}"' for k, v in sorted(labels.items()))
            lines.append(f"{sample}{{{body}}} {_number(value)}" if body else f"{sample} {_number(value)}")
    return "\n".join(lines) + "\n"


_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">{refresh}<title>codeahead cache</title>
<style>
body {{ font: 14px system-ui, sans-serif; margin: 1.5em; color: #222; }}
svg {{ background: #fafafa; border: 1px solid #ddd; display: block; margin-bottom: 1.5em; }}
.axis {{ stroke: #999; }} .series {{ fill: none; stroke-width: 2; }} text {{ font-size: 11px; }}
</style></head>
<body data-plotted="false">
<h1>codeahead cache</h1>
{empty}
<h2>Hit rate per tier</h2>
<svg id="hit-rate" width="720" height="260" role="img" aria-label="hit rate per tier over time"></svg>
<h2>Prediction accuracy</h2>
<svg id="prediction" width="720" height="260" role="img" aria-label="prediction accuracy over time"></svg>
<script type="application/json" id="dashboard-data">{data}</script>
<script>
(function () {{
  var NS = "http://www.w3.org/2000/svg";
  var COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b"];
  var PAD = {{left: 44, right: 120, top: 12, bottom: 28}};
  function el(name, attrs, parent) {{
    var node = document.createElementNS(NS, name);
    for (var k in attrs) node.setAttribute(k, attrs[k]);
    parent.appendChild(node);
    return node;
  }}
  function plot(svg, series) {{
    var w = +svg.getAttribute("width"), h = +svg.getAttribute("height");
    var iw = w - PAD.left - PAD.right, ih = h - PAD.top - PAD.bottom;
    var names = Object.keys(series), t0 = Infinity, t1 = -Infinity;
    names.forEach(function (n) {{
      series[n].forEach(function (p) {{ t0 = Math.min(t0, p[0]); t1 = Math.max(t1, p[0]); }});
    }});
    if (t1 <= t0) {{ t1 = t0 + 1; }}
    function x(t) {{ return PAD.left + (t - t0) / (t1 - t0) * iw; }}
    function y(v) {{ return PAD.top + (1 - v) * ih; }}
    el("line", {{class: "axis", x1: PAD.left, y1: y(0), x2: PAD.left + iw, y2: y(0)}}, svg);
    el("line", {{class: "axis", x1: PAD.left, y1: y(0), x2: PAD.left, y2: y(1)}}, svg);
    [0, 0.5, 1].forEach(function (v) {{
      el("text", {{x: 4, y: y(v) + 4}}, svg).textContent = Math.round(v * 100) + "%";
    }});
    var drawn = 0;
    names.forEach(function (n, i) {{
      var d = "", pen = "M";
      series[n].forEach(function (p) {{
        if (p[1] === null) {{ pen = "M"; return; }}
        d += pen + x(p[0]).toFixed(1) + "," + y(p[1]).toFixed(1) + " "; pen = "L";
      }});
      var color = COLORS[i % COLORS.length];
      if (d) {{ el("path", {{class: "series", d: d, stroke: color, "data-series": n}}, svg); drawn++; }}
      var label = el("text", {{x: PAD.left + iw + 10, y: PAD.top + 14 * (i + 1), fill: color}}, svg);
      label.textContent = n;
    }});
    svg.setAttribute("data-drawn", String(drawn));
    return drawn;
  }}
  var data = JSON.parse(document.getElementById("dashboard-data").textContent);
  var tiers = {{}};
  data.hit_rate.forEach(function (point) {{
    Object.keys(point[1]).forEach(function (tier) {{
      (tiers[tier] = tiers[tier] || []).push([point[0], point[1][tier]]);
    }});
  }});
  var total = plot(document.getElementById("hit-rate"), tiers)
            + plot(document.getElementById("prediction"), {{accuracy: data.prediction}});
  document.body.setAttribute("data-plotted", total > 0 ? "true" : "empty");
}})();
</script>
</body></html>
"""


def dashboard_html(stats_history: Iterable[tuple[float, Mapping[str, float | None]]],
                   prediction_history: Sequence[tuple[float, float | None]], *,
                   refresh_seconds: int | None = None) -> str:
    """A self-contained page (inline SVG drawn by inline JS) plotting hit rate per tier and prediction accuracy.

    ``stats_history`` is ``TieredCache.history()``; ``prediction_history`` is (time, accuracy in [0, 1]) points.
    """
    data = {"hit_rate": [[t, dict(rates)] for t, rates in stats_history],
            "prediction": [[t, v] for t, v in prediction_history]}
    payload = json.dumps(data, allow_nan=False).replace("</", "<\\/")
    refresh = f'<meta http-equiv="refresh" content="{int(refresh_seconds)}">' if refresh_seconds else ""
    empty = "" if data["hit_rate"] or data["prediction"] else (
        '<p class="empty">No samples yet: hit rates are sampled once a minute, prediction accuracy after each '
        "move the server observes. This page reloads itself.</p>")
    return _PAGE.format(data=payload, refresh=refresh, empty=empty)


__all__ = ["CONTENT_TYPE", "render_prometheus", "dashboard_html"]
