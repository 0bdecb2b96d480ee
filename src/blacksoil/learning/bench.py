"""`blacksoil bench swap`: concurrent streaming agent sessions keep running while adapters are hot-swapped.

Counts every request and every failure (HTTP error, error chunk, stream without [DONE]); splits inter-token
latency into steady state and during-swap windows; records how long each new version took to become visible.
"""

from __future__ import annotations

import json
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from blacksoil.learning.context import LearnerContext
from blacksoil.learning.swap import HotSwapper, SwapReport


@dataclass
class LoadStats:
    """What the load generator saw."""

    requests: int = 0
    failed: int = 0
    errors: list[str] = field(default_factory=list)
    token_times: list[tuple[float, float]] = field(default_factory=list)
    """(time of the token, gap since the previous token of the same stream) in monotonic seconds."""
    lock: threading.Lock = field(default_factory=threading.Lock)


def _session(url: str, model: str, name: str, stop: threading.Event, stats: LoadStats, max_tokens: int) -> None:
    """One agent session: streamed requests back to back until `stop`."""
    turn = 0
    with httpx.Client(timeout=300) as client:
        while not stop.is_set():
            turn += 1
            body = {"model": model, "stream": True, "max_tokens": max_tokens, "user": name,
                    "messages": [{"role": "user", "content": f"Step {turn}: list three machine checks."}]}
            ok, gaps, last, err = False, [], None, ""
            try:
                with client.stream("POST", url + "/v1/chat/completions", json=body) as r:
                    if r.status_code != 200:
                        err = f"HTTP {r.status_code}: {r.read()[:200]!r}"
                    for line in r.iter_lines():
                        if not line.startswith("data: "):
                            continue
                        if line == "data: [DONE]":
                            ok = not err
                            break
                        chunk = json.loads(line[6:])
                        if "error" in chunk:
                            err = str(chunk["error"])[:200]
                            continue
                        now = time.monotonic()
                        if chunk.get("choices") and (chunk["choices"][0].get("delta") or {}).get("content"):
                            if last is not None:
                                gaps.append((now, now - last))
                            last = now
            except httpx.HTTPError as e:
                err = f"{type(e).__name__}: {e}"
            with stats.lock:
                stats.requests += 1
                stats.token_times += gaps
                if not ok:
                    stats.failed += 1
                    stats.errors.append(err or "stream ended without [DONE]")


def run_swap_bench(ctx: LearnerContext, *, sessions: int = 4, swaps: int = 3, max_tokens: int = 24,
                   settle_s: float = 8.0, canary: bool = False) -> dict[str, Any]:
    """Start a gateway, run `sessions` sessions of load, swap adapters `swaps` times; return the numbers."""
    from blacksoil.learning.adapters import AdapterStore
    from blacksoil.learning.basemodel import info_from_gguf
    from blacksoil.learning.randomlora import write_random_peft
    from blacksoil.serving.config import ServingConfig
    from blacksoil.serving.launch import gateway

    serving = ServingConfig.model_validate(ctx.serving.model_dump() | {
        "replicas": 1, "slots": max(sessions, 4), "concurrency": sessions, "ctx": 1024 * max(sessions, 4)})
    info = info_from_gguf()
    stats = LoadStats()
    reports: list[SwapReport] = []
    windows: list[tuple[float, float]] = []
    # Bench adapters live in a temporary store: they must not show up in the user's `adapters list`.
    with tempfile.TemporaryDirectory() as tmp, gateway(ctx.root, serving=serving) as gw:
        store = AdapterStore(Path(tmp) / "home", gw.model)
        # Small random adapters: real new versions whose outputs stay sensible.
        versions = [store.publish(write_random_peft(Path(tmp) / f"a{i}", info, b_std=0.002, seed=i), info)
                    for i in range(swaps)]
        stop = threading.Event()
        threads = [threading.Thread(target=_session, args=(gw.url, gw.model, f"bench-{k}", stop, stats, max_tokens),
                                    daemon=True) for k in range(sessions)]
        for t in threads:
            t.start()
        swapper = HotSwapper(gw, api_key=ctx.api_key, canary=canary, canary_requests=2)
        time.sleep(settle_s)
        for av in versions:
            t0 = time.monotonic()
            reports.append(swapper.swap(av))
            windows.append((t0, time.monotonic()))
            time.sleep(settle_s)
        stop.set()
        for t in threads:
            t.join(timeout=300)
        served = sorted(swapper.served_versions())
    during = [g for (ts, g) in stats.token_times if any(a <= ts <= b for a, b in windows)]
    steady = [g for (ts, g) in stats.token_times if not any(a <= ts <= b for a, b in windows)]
    p99 = lambda xs: round(float(np.percentile(xs, 99)) * 1000, 1) if xs else 0.0  # noqa: E731
    return {
        "requests": stats.requests, "failed": stats.failed, "swaps": sum(r.ok for r in reports),
        "swap_visible_s_max": round(max((r.visible_s for r in reports), default=0.0), 2),
        "swap_s_max": round(max((r.seconds for r in reports), default=0.0), 2),
        "itl_p99_ms_during_swap": p99(during), "itl_p99_ms_steady": p99(steady),
        "served_version": ",".join(served), "expected_version": versions[-1].version if versions else "base",
        "errors": stats.errors[:5],
    }
