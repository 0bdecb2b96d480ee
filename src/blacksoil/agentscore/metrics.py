"""Run metrics: completion, pass^k, partial credit, latency percentiles, tokens, cost, CPU, tool errors.

Policy violations are the tool calls the security policies denied or sent to a human (runtime agent; others: 0).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import numpy as np

from .config import AgentscoreConfig
from .runner import Episode


def _pct(values: Sequence[float], q: float) -> float:
    return float(np.percentile(values, q)) if len(values) else 0.0


def pass_at_k(episodes: Sequence[Episode]) -> float:
    """Share of tasks whose every trial passed (τ-bench pass^k)."""
    by_task: dict[str, list[bool]] = defaultdict(list)
    for e in episodes:
        by_task[e.task_id].append(e.passed)
    return sum(all(v) for v in by_task.values()) / len(by_task) if by_task else 0.0


def episode_cost_usd(e: Episode, model: str, cfg: AgentscoreConfig) -> float:
    """Tokens times the price table plus CPU seconds times the core-hour price."""
    p_in, p_out = cfg.prices(model)
    return (e.prompt_tokens * p_in + e.completion_tokens * p_out) / 1e6 + e.cpu_s * cfg.price_cpu_usd_per_hour / 3600


def summarize(episodes: Sequence[Episode], model: str, cfg: AgentscoreConfig) -> dict[str, Any]:
    """The metrics of one run (all numbers are per episode = per task trial unless named otherwise)."""
    n = max(1, len(episodes))
    tasks = sorted({e.task_id for e in episodes})
    steps = [s for e in episodes for s in e.step_latencies_s]
    lat = [e.latency_s for e in episodes]
    by_cat: dict[str, list[bool]] = defaultdict(list)
    for e in episodes:
        by_cat[e.category].append(e.passed)
    multi = [e.passed for e in episodes if e.multi_step]
    return {
        "tasks": len(tasks),
        "episodes": len(episodes),
        "completion_rate": round(sum(e.passed for e in episodes) / n, 4),
        "pass_k": round(pass_at_k(episodes), 4),
        "partial_credit": round(sum(e.reward for e in episodes) / n, 4),
        "multi_step_completion": round(sum(multi) / len(multi), 4) if multi else None,
        "latency_p50_s": round(_pct(lat, 50), 4),
        "latency_p95_s": round(_pct(lat, 95), 4),
        "step_latency_p50_s": round(_pct(steps, 50), 4),
        "step_latency_p95_s": round(_pct(steps, 95), 4),
        "prompt_tokens_per_task": round(sum(e.prompt_tokens for e in episodes) / n, 1),
        "output_tokens_per_task": round(sum(e.completion_tokens for e in episodes) / n, 1),
        "tokens_per_task": round(sum(e.prompt_tokens + e.completion_tokens for e in episodes) / n, 1),
        "cost_per_task_usd": round(sum(episode_cost_usd(e, model, cfg) for e in episodes) / n, 8),
        "cpu_seconds_per_task": round(sum(e.cpu_s for e in episodes) / n, 4),
        "tool_calls_per_task": round(sum(e.tool_calls for e in episodes) / n, 2),
        "tool_errors": sum(e.tool_errors for e in episodes),
        "agent_errors": sum(1 for e in episodes if e.error),
        "policy_violations": sum(e.policy_violations for e in episodes),
        "completion_by_category": {c: round(sum(v) / len(v), 4) for c, v in sorted(by_cat.items())},
    }
