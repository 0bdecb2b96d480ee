"""What a learner takes from the root settings, resolved once at the top and passed in.

The learner used to read the process-wide `settings()` deep inside (the trainer, the swap probe, the collection
agent); then one process could not run two learners with different configurations. Everything a learner needs
from outside its own `LearningConfig` is named here, and the composition root or a CLI builds it once.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from blacksoil.agents.config import AgentsConfig
from blacksoil.agentscore.config import AgentscoreConfig
from blacksoil.experience.config import ExperienceConfig
from blacksoil.factories.env_settings import EnvSettings
from blacksoil.factories.manufacturing.config import ManufacturingConfig
from blacksoil.learning.config import LearningConfig
from blacksoil.serving.config import ServingConfig

__all__ = ["LearnerContext", "RootSettings"]


class RootSettings(Protocol):
    """The sections of the root settings a learner reads (blacksoil.config.Settings has them).

    A Protocol, not an import of config.Settings: the learning pillar sits below the composition root.
    """

    @property
    def home(self) -> Path: ...

    @property
    def learning(self) -> LearningConfig: ...

    @property
    def serving(self) -> ServingConfig: ...

    @property
    def agentscore(self) -> AgentscoreConfig: ...

    @property
    def experience(self) -> ExperienceConfig: ...

    @property
    def agents(self) -> AgentsConfig: ...

    @property
    def manufacturing(self) -> ManufacturingConfig: ...

    @property
    def platform(self) -> Any:
        """The platform section: its `api_keys` map a key to the tenant it acts for."""


@dataclass(frozen=True)
class LearnerContext:
    """A learner's inputs from outside the learning pillar (one per learner, never a process-wide global)."""

    home: Path
    """Where adapters, run folders, rounds.jsonl and the fp32 base-model copy live."""
    learning: LearningConfig = field(default_factory=LearningConfig)
    """LoRA, gate and swap settings of this learner."""
    serving: ServingConfig = field(default_factory=ServingConfig)
    """The gateways the learner starts for itself (the eval gate's scoring gateways, `learn`'s own gateway)."""
    agentscore: AgentscoreConfig = field(default_factory=AgentscoreConfig)
    """The model agent's limits while collecting and scoring."""
    experience: ExperienceConfig = field(default_factory=ExperienceConfig)
    """Prioritized replay's parameters."""
    api_key: str = "none"
    """Key sent to the gateway (agents.api_key): with platform API keys it picks the tenant the calls count for."""
    root: Any = None
    """The root settings object, handed unchanged to serving.launch.gateway when the learner starts a gateway
    (required before the learner starts one)."""
    manufacturing: ManufacturingConfig = field(default_factory=ManufacturingConfig)
    """The plant's RUL model and the job-shop solver in the environments the learner collects and scores in."""
    tenant: str = "default"
    """The tenant the learner's own practice counts for (the one `api_key` maps to); its data always trains."""

    @property
    def env(self) -> EnvSettings:
        """The settings of the AgentScore environments this learner runs tasks in."""
        return EnvSettings(self.home, self.manufacturing)

    @classmethod
    def from_settings(cls, s: RootSettings) -> LearnerContext:
        """The context of the root settings `s` (the CLI's or the composition root's)."""
        return cls(home=s.home, learning=s.learning, serving=s.serving, agentscore=s.agentscore,
                   experience=s.experience, api_key=s.agents.api_key, root=s, manufacturing=s.manufacturing,
                   tenant=s.platform.api_keys.get(s.agents.api_key, "default"))

    def with_learning(self, **changes: Any) -> LearnerContext:
        """A copy whose LearningConfig has `changes` (validated)."""
        cfg = LearningConfig.model_validate(self.learning.model_dump() | changes)
        return dataclasses.replace(self, learning=cfg)
