"""Time series of the gateway's live metrics for the console, sampled from its own Prometheus registry.

Quantiles over a sliding window come from histogram bucket differences, as PromQL's histogram_quantile does.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from dataclasses import asdict, dataclass
from typing import Any

from prometheus_client import CollectorRegistry

__all__ = ["Point", "ServingSampler", "Snapshot", "histogram_quantile", "make_point", "take_snapshot"]

_HISTOGRAMS = {
    "ttft": "blacksoil:time_to_first_token_seconds",
    "itl": "blacksoil:inter_token_latency_seconds",
    "e2e": "blacksoil:e2e_request_latency_seconds",
    "queue": "blacksoil:request_queue_time_seconds",
}
_COUNTERS = {
    "prompt_tokens": "blacksoil:prompt_tokens_total",
    "generation_tokens": "blacksoil:generation_tokens_total",
    "prefix_hits": "blacksoil:prefix_cache_hits_total",
}


@dataclass
class Snapshot:
    """Cumulative metric state at one instant (summed over labels)."""

    t: float
    buckets: dict[str, list[tuple[float, float]]]
    """Histogram name -> [(upper bound, cumulative count)] sorted by bound."""
    counters: dict[str, float]
    waiting: float
    running: float


@dataclass
class Point:
    """One plotted point of the serving view."""

    t: float
    """Unix time (s)."""
    ttft_p50_ms: float | None
    ttft_p99_ms: float | None
    itl_p50_ms: float | None
    itl_p99_ms: float | None
    e2e_p50_s: float | None
    tokens_per_s: float
    """Generated tokens per second over the window."""
    queue_depth: float
    """Requests waiting in the gateway queue."""
    running: float
    """Requests on an engine."""
    prefix_hit_rate: float | None
    """Share of prompt tokens served from the prefix cache over the window."""


def take_snapshot(registry: CollectorRegistry, now: float | None = None) -> Snapshot:
    """Read the registry once."""
    buckets: dict[str, dict[float, float]] = {k: {} for k in _HISTOGRAMS}
    counters = dict.fromkeys(_COUNTERS, 0.0)
    waiting = running = 0.0
    by_hist = {v: k for k, v in _HISTOGRAMS.items()}
    by_counter = {v: k for k, v in _COUNTERS.items()}
    for metric in registry.collect():
        for s in metric.samples:
            if s.name.endswith("_bucket") and s.name[: -len("_bucket")] in by_hist:
                key = by_hist[s.name[: -len("_bucket")]]
                le = float(s.labels["le"])
                buckets[key][le] = buckets[key].get(le, 0.0) + s.value
            elif s.name in by_counter:
                counters[by_counter[s.name]] += s.value
            elif s.name == "blacksoil:num_requests_waiting":
                waiting = s.value
            elif s.name == "blacksoil:num_requests_running":
                running = s.value
    return Snapshot(now if now is not None else time.time(),
                    {k: sorted(v.items()) for k, v in buckets.items()}, counters, waiting, running)


def histogram_quantile(q: float, old: list[tuple[float, float]], new: list[tuple[float, float]]) -> float | None:
    """Quantile q of the observations that arrived between two cumulative bucket lists (None if none)."""
    prev = dict(old)
    diff = [(le, c - prev.get(le, 0.0)) for le, c in new]
    if not diff or diff[-1][1] <= 0:
        return None
    total = diff[-1][1]
    rank = q * total
    lower_bound, lower_count = 0.0, 0.0
    for le, count in diff:
        if count >= rank:
            if math.isinf(le):
                return lower_bound  # as Prometheus: the highest finite bound
            width = count - lower_count
            frac = (rank - lower_count) / width if width > 0 else 1.0
            return lower_bound + (le - lower_bound) * frac
        lower_bound, lower_count = le, count
    return lower_bound


def make_point(old: Snapshot, new: Snapshot) -> Point:
    """The serving view's point for the window between two snapshots."""
    dt = max(new.t - old.t, 1e-9)

    def q(name: str, p: float, scale: float) -> float | None:
        v = histogram_quantile(p, old.buckets[name], new.buckets[name])
        return None if v is None else v * scale

    d_prompt = new.counters["prompt_tokens"] - old.counters["prompt_tokens"]
    d_hits = new.counters["prefix_hits"] - old.counters["prefix_hits"]
    seen = d_prompt + d_hits
    return Point(
        t=new.t,
        ttft_p50_ms=q("ttft", 0.5, 1e3), ttft_p99_ms=q("ttft", 0.99, 1e3),
        itl_p50_ms=q("itl", 0.5, 1e3), itl_p99_ms=q("itl", 0.99, 1e3),
        e2e_p50_s=q("e2e", 0.5, 1.0),
        tokens_per_s=(new.counters["generation_tokens"] - old.counters["generation_tokens"]) / dt,
        queue_depth=new.waiting, running=new.running,
        prefix_hit_rate=(d_hits / seen) if seen > 0 else None,
    )


class ServingSampler:
    """Samples a registry every `interval_s` into a bounded series of windowed points."""

    def __init__(self, registry: CollectorRegistry, interval_s: float = 2.0, window: int = 5,
                 max_points: int = 600) -> None:
        if interval_s <= 0:
            raise ValueError(f"interval_s={interval_s!r} must be > 0")
        self.registry = registry
        self.interval_s = interval_s
        self._snaps: deque[Snapshot] = deque(maxlen=window + 1)
        self.points: deque[Point] = deque(maxlen=max_points)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def tick(self, now: float | None = None) -> None:
        """Take one snapshot and append the point for the window it closes."""
        snap = take_snapshot(self.registry, now)
        with self._lock:
            if self._snaps:
                self.points.append(make_point(self._snaps[0], snap))
            self._snaps.append(snap)

    def series(self) -> list[dict[str, Any]]:
        with self._lock:
            return [asdict(p) for p in self.points]

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, daemon=True, name="console-sampler")
            self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.tick()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
