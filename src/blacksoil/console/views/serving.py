"""Serving view: live TTFT / inter-token latency percentiles, tokens/s, queue depth, prefix-cache hits, replicas.

Series come from the console's sampler over the gateway's own Prometheus histograms.
"""

from __future__ import annotations

import time
from typing import Any

from blacksoil.console.context import ConsoleContext, card, chart, table


def collect(ctx: ConsoleContext, tenant: str) -> dict[str, Any]:
    points = ctx.sampler.series() if ctx.sampler else []
    labels = [time.strftime("%H:%M:%S", time.localtime(p["t"])) for p in points]

    def series(key: str, name: str, color: str) -> dict[str, Any]:
        return {"label": name, "data": [p[key] for p in points], "borderColor": color, "spanGaps": True}

    replicas = [r.__dict__ for r in ctx.pool.info()] if ctx.pool is not None else []
    last = points[-1] if points else {}
    cards = [
        card("replicas", "replicas ready", sum(1 for r in replicas if r["status"] == "ready")),
        card("queue_depth", "queue depth", last.get("queue_depth", 0)),
        card("running", "requests running", last.get("running", 0)),
        card("tokens_per_s", "tokens/s", round(last.get("tokens_per_s", 0.0), 2)),
        card("served_versions", "served adapter versions",
             ", ".join(sorted({r["adapter_version"] for r in replicas})) or "–"),
    ]
    charts = [
        chart("ttft", "time to first token (ms)", "line", labels,
              [series("ttft_p50_ms", "p50", "#7fc98f"), series("ttft_p99_ms", "p99", "#e0b35a")], y_label="ms"),
        chart("itl", "inter-token latency (ms)", "line", labels,
              [series("itl_p50_ms", "p50", "#7fc98f"), series("itl_p99_ms", "p99", "#e0b35a")], y_label="ms"),
        chart("throughput", "generated tokens/s and queue depth", "line", labels,
              [series("tokens_per_s", "tokens/s", "#6aa7e0"), series("queue_depth", "queue depth", "#e06a5a")]),
        chart("prefix", "prefix-cache hit rate", "line", labels,
              [series("prefix_hit_rate", "hit rate", "#b58fe0")], y_label="share of prompt tokens"),
    ]
    rows = [[r["name"], r["kind"], r["status"], r["adapter_version"], r["inflight"],
             "yes" if r["accepting_new_sessions"] else "no"] for r in replicas]
    tables = [table("replicas", "replicas", ["replica", "engine", "status", "adapter version", "in flight",
                                              "new sessions"], rows, "no gateway is attached to this console")]
    return {"cards": cards, "charts": charts, "tables": tables}
