"""Rewards from AgentScore checkers into the store (feedback arrives through api.py, tool errors at ingest).

Each reward keeps its source so the learner can weigh checkers, people and tool failures differently.
"""

from __future__ import annotations

from typing import Any

from blacksoil.errors import ConfigError
from blacksoil.experience.tenant import TenantStore


def record_check(store: TenantStore, session_id: str, score: float, *, checker: str, task_id: str | None = None,
                 passed: bool | None = None, detail: dict[str, Any] | None = None) -> bool:
    """Store an AgentScore checker result (score in [0, 1]: 1 = success, fractions = partial credit).

    Idempotent per (session, checker): re-running a checker does not double the reward.
    """
    if not 0.0 <= score <= 1.0:
        raise ConfigError(f"checker {checker!r} score {score} is outside [0, 1]; report partial credit as a fraction")
    info = {"checker": checker, "task_id": task_id, "passed": score >= 1.0 if passed is None else passed,
            **(detail or {})}
    return store.add_reward(score, "agentscore", session_id=session_id, detail=info,
                            dedup_key=f"agentscore:{session_id}:{checker}")
