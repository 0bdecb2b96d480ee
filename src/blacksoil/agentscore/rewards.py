"""Checker rewards into the experience store: one reward per episode on the session the model endpoint saw.

The learner reads them next to the gateway's records of that session (`experience.rewards.record_check`).
"""

from __future__ import annotations

import threading
from typing import Any

_STORES: dict[str, Any] = {}
_LOCK = threading.Lock()


def experience_store() -> Any:
    """The experience store of the current settings (one per home; opening it runs migrations, so it is kept)."""
    from blacksoil.config import settings
    from blacksoil.experience.store import ExperienceStore

    s = settings()
    key = str(s.home)
    with _LOCK:
        if key not in _STORES:
            _STORES[key] = ExperienceStore.from_settings(s.home, s.experience)
        return _STORES[key]


def record_episode(tenant: str, session_id: str, *, suite: str, task_id: str, reward: float, passed: bool,
                   trial: int, policy_violations: int, split: str = "") -> bool:
    """Store one episode's reward; False when already recorded, or when the store never saw the session (the
    endpoint failed before any event of it was recorded, or events go to a JSONL sink): then there is nothing to join.
    """
    from blacksoil.experience.rewards import record_check

    store = experience_store().tenant(tenant)
    if not store.has_session(session_id):
        return False
    return record_check(store, session_id, reward, checker=f"agentscore.{suite}",
                        task_id=task_id, passed=passed,
                        detail={"trial": trial, "policy_violations": policy_violations, "split": split})
