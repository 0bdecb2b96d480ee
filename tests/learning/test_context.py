"""Settings flow down: two learners with different LearningConfigs run side by side in one process.

Each learner gets its own LearnerContext (no process-wide settings are read or patched), builds its gate, swapper
and trainer from it, and one real training step of each shows its own LoRA rank and learning rate at work.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from blacksoil.agentscore.config import AgentscoreConfig
from blacksoil.experience.store import ExperienceStore, default_url
from blacksoil.learning.config import LearningConfig
from blacksoil.learning.context import LearnerContext
from blacksoil.learning.loop import Learner, LoopOptions
from blacksoil.learning.samples import TrainSample
from blacksoil.learning.trainer import LoraTrainer


@dataclass
class _NoReplicas:
    """A pool with no replica running (the learner asks which adapter is served when it starts)."""

    def info(self) -> list[Any]:
        return []


class _IdleGateway:
    """Satisfies contracts.RunningGateway without an engine: these learners are built and trained, never served."""

    url: str = "http://127.0.0.1:9"
    model: str = "smollm2-135m-instruct"
    pool: Any = _NoReplicas()
    sink: Any = None

    @property
    def openai_base_url(self) -> str:
        return self.url + "/v1"


def _learner(home: Path, learning: LearningConfig, api_key: str, step_budget: int) -> Learner:
    ctx = LearnerContext(home, learning, agentscore=AgentscoreConfig(step_budget=step_budget), api_key=api_key)
    store = ExperienceStore(default_url(home))
    return Learner(_IdleGateway(), store, LoopOptions(suites=("tools-basic",), demos=False), ctx)


@pytest.fixture(scope="module")
def two_learners(blacksoil_home: Path) -> tuple[Learner, Learner]:
    small = LearningConfig(lora_rank=4, lora_alpha=8, learning_rate=1e-4, batch_size=2, max_seq_len=48,
                           steps_per_round=3, lora_layers=2, seed=1)
    large = LearningConfig(lora_rank=8, lora_alpha=16, learning_rate=5e-3, batch_size=2, max_seq_len=48,
                           steps_per_round=5, lora_layers=4, seed=2)
    return _learner(blacksoil_home, small, "key-of-a", 3), _learner(blacksoil_home, large, "key-of-b", 5)


def test_each_learner_keeps_its_own_learning_config(two_learners: tuple[Learner, Learner]) -> None:
    a, b = two_learners
    assert (a.cfg.lora_rank, b.cfg.lora_rank) == (4, 8)
    assert (a.cfg.steps_per_round, b.cfg.steps_per_round) == (3, 5)


def test_each_learner_builds_its_gate_and_swapper_from_its_context(two_learners: tuple[Learner, Learner]) -> None:
    a, b = two_learners
    assert (a.swapper.api_key, b.swapper.api_key) == ("key-of-a", "key-of-b")
    assert a.gate.agent_config is not None and b.gate.agent_config is not None
    assert (a.gate.agent_config.step_budget, b.gate.agent_config.step_budget) == (3, 5)


def test_each_learner_trains_with_its_own_rank_and_learning_rate(two_learners: tuple[Learner, Learner],
                                                                  secret_samples: list[TrainSample]) -> None:
    """One real step per learner, as Learner._train builds its trainer (its info and its cfg)."""
    seen = {}
    for learner in two_learners:
        trainer = LoraTrainer(learner.info, learner.cfg, learner.run_dir(1) / "train")
        res = trainer.train(secret_samples, 1)
        lora_a = next(p for n, p in trainer.params.items() if "lora_A" in n)
        seen[learner.cfg.lora_rank] = (int(lora_a.shape[0]), trainer.optimizer.param_groups[0]["lr"], res.steps)
    assert seen == {4: (4, 1e-4, 1), 8: (8, 5e-3, 1)}


def test_learners_started_together_have_separate_run_folders(two_learners: tuple[Learner, Learner]) -> None:
    a, b = two_learners
    assert a.run_dir(1) != b.run_dir(1)
