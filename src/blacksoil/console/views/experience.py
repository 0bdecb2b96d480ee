"""Experience view: volume over time by source, reward distribution, and what the replay buffer favours now.

Everything is read through the tenant-scoped store API, so a tenant only ever sees its own experience.
"""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path
from typing import Any

from blacksoil.console.context import ConsoleContext, card, chart, table

_RECENT = 5000  # events per kind considered for the volume chart
_BUCKET_S = 60


def _store(ctx: ConsoleContext) -> Any:
    store = ctx.extras.get("experience_store")
    if store is None:
        from blacksoil.experience.store import ExperienceStore

        store = ExperienceStore.from_settings(ctx.settings.home, ctx.settings.experience)
        ctx.extras["experience_store"] = store
    return store


def _replay_rows(ctx: ConsoleContext) -> list[list[Any]]:
    """Top items of the learner's persisted replay buffer, if one exists."""
    path = Path(ctx.extras.get("replay_path") or ctx.settings.home / "learning" / "replay.npz")
    if not path.exists():
        return []
    from blacksoil.experience.replay import PrioritizedReplay

    replay = PrioritizedReplay.load(path)
    return [[key, round(prob, 4), version] for key, prob, version in replay.top(10)]


def collect(ctx: ConsoleContext, tenant: str) -> dict[str, Any]:
    ts = _store(ctx).tenant(tenant)
    stats = ts.stats()
    calls = ts.model_calls(limit=_RECENT)
    steps = ts.tool_steps(limit=_RECENT)
    rewards = ts.rewards()
    buckets: dict[int, Counter[str]] = {}
    for kind, rows in (("model calls", calls), ("tool steps", steps)):
        for r in rows:
            b = int(r["created_at"] // _BUCKET_S) * _BUCKET_S
            buckets.setdefault(b, Counter())[kind] += 1
    times = sorted(buckets)
    labels = [time.strftime("%H:%M", time.localtime(b)) for b in times]
    volume = [{"label": k, "data": [buckets[b][k] for b in times], "backgroundColor": c}
              for k, c in (("model calls", "#6aa7e0"), ("tool steps", "#7fc98f"))]
    edges = [-1.0, -0.5, 0.0, 0.25, 0.5, 0.75, 1.0]
    hist = [0] * (len(edges) - 1)
    for r in rewards:
        v = max(edges[0], min(edges[-1], r["value"]))
        i = next(i for i in range(len(hist)) if v <= edges[i + 1])
        hist[i] += 1
    by_source = Counter(r["source"] for r in rewards)
    return {
        "cards": [card(k, k.replace("_", " "), v) for k, v in stats.items()]
        + [card(f"rewards_{s}", f"rewards from {s}", n) for s, n in sorted(by_source.items())],
        "charts": [
            chart("volume", "experience per minute by source", "bar", labels, volume, stacked=True),
            chart("rewards", "reward distribution", "bar",
                  [f"({edges[i]}, {edges[i + 1]}]" for i in range(len(hist))],
                  [{"label": "rewards", "data": hist, "backgroundColor": "#e0b35a"}]),
        ],
        "tables": [
            table("replay", "replay buffer: highest priorities now",
                  ["item (session)", "sampling probability", "policy version"],
                  _replay_rows(ctx), "the learner has not saved a replay buffer yet"),
            table("recent", "latest model calls", ["time", "session", "model", "adapter", "tokens"],
                  [[time.strftime("%H:%M:%S", time.localtime(c["created_at"])), c["session_id"], c["model"],
                    c["adapter_version"] or "base", (c["usage"] or {}).get("completion_tokens")]
                   for c in calls[-15:][::-1]]),
        ],
    }
