"""Priority of a trajectory for replay, from failure, advantage, learnability, recency and novelty.

Groups are attempts at the same task: a group whose rewards do not vary teaches nothing (DAPO).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from blacksoil.experience.config import DEFAULT_PRIORITY_WEIGHTS


def priority_terms(trajectories: Sequence[Mapping[str, Any]], now: float, half_life_s: float) -> dict[str, np.ndarray]:
    """Each source as an array aligned with `trajectories` (keys: task_id, reward, failed, created_at)."""
    n = len(trajectories)
    reward = np.array([float(t.get("reward", 0.0)) for t in trajectories], dtype=np.float64)
    failed = np.array([bool(t.get("failed", False)) for t in trajectories], dtype=np.float64)
    created = np.array([float(t.get("created_at", now)) for t in trajectories], dtype=np.float64)
    groups: dict[Any, list[int]] = defaultdict(list)
    for i, t in enumerate(trajectories):
        groups[t.get("task_id") or f"__single_{i}"].append(i)
    advantage = np.zeros(n)
    learnability = np.zeros(n)
    novelty = np.zeros(n)
    for members in groups.values():
        idx = np.array(members)
        r = reward[idx]
        advantage[idx] = np.abs(r - r.mean())
        # Success rate p of the group: reward > 0 counts as success; p(1-p) peaks at 0.25 for p=0.5.
        p = float((r > 0).mean())
        learnability[idx] = 4.0 * p * (1.0 - p)
        novelty[idx] = 1.0 / np.sqrt(len(members))
    recency = np.power(0.5, np.maximum(0.0, now - created) / half_life_s)
    return {"failure": failed, "advantage": advantage, "learnability": learnability, "recency": recency,
            "novelty": novelty}


def combine(terms: Mapping[str, np.ndarray], weights: Mapping[str, float] | None = None) -> np.ndarray:
    """Weighted sum of the terms (weights default to the config's)."""
    w = dict(DEFAULT_PRIORITY_WEIGHTS if weights is None else weights)
    out: np.ndarray | None = None
    for name, arr in terms.items():
        part = w.get(name, 0.0) * arr
        out = part if out is None else out + part
    return out if out is not None else np.zeros(0)


def trajectory_priorities(trajectories: Sequence[Mapping[str, Any]], now: float, half_life_s: float = 86_400.0,
                          weights: Mapping[str, float] | None = None) -> np.ndarray:
    """One priority per trajectory."""
    return combine(priority_terms(trajectories, now, half_life_s), weights)
