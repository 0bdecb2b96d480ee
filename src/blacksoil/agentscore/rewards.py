"""Checker rewards into the experience store: one reward per episode on the session the model endpoint saw.

The learner reads them next to the gateway's records of that session (`experience.rewards.record_check`).
The caller that holds the settings builds a `RewardRecorder` and hands it to the runner; without one, no reward
is stored.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from blacksoil.agentscore.config import AgentscoreConfig
from blacksoil.experience.config import ExperienceConfig

__all__ = ["RewardRecorder", "experience_store"]

_STORES: dict[str, Any] = {}
_LOCK = threading.Lock()


def experience_store(home: Path, config: ExperienceConfig) -> Any:
    """The experience store under `home` (one per home; opening it runs migrations, so it is kept)."""
    from blacksoil.experience.store import ExperienceStore

    key = str(home)
    with _LOCK:
        if key not in _STORES:
            _STORES[key] = ExperienceStore.from_settings(home, config)
        return _STORES[key]


class RewardRecorder:
    """Stores episode rewards of one tenant into the experience store under `home`."""

    def __init__(self, home: Path, experience: ExperienceConfig, tenant: str) -> None:
        self.home, self.experience, self.tenant = home, experience, tenant

    @classmethod
    def from_config(cls, home: Path, experience: ExperienceConfig,
                    config: AgentscoreConfig) -> RewardRecorder | None:
        """The recorder agentscore's settings ask for: None when `record_rewards` is off."""
        return cls(home, experience, config.runtime_tenant) if config.record_rewards else None

    def store(self) -> Any:
        """This tenant's view of the experience store."""
        return experience_store(self.home, self.experience).tenant(self.tenant)

    def record(self, session_id: str, *, suite: str, task_id: str, reward: float, passed: bool, trial: int,
               policy_violations: int, split: str = "") -> bool:
        """Store one episode's reward; False when already recorded, or when the store never saw the session (the
        endpoint failed before any event of it was recorded, or events go to a JSONL sink): then there is nothing
        to join.
        """
        from blacksoil.experience.rewards import record_check

        store = self.store()
        if not store.has_session(session_id):
            return False
        return record_check(store, session_id, reward, checker=f"agentscore.{suite}",
                            task_id=task_id, passed=passed,
                            detail={"trial": trial, "policy_violations": policy_violations, "split": split})
