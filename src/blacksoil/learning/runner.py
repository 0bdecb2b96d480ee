"""Where a learning round's optimizer steps run: the seam between the Learner and whatever places the training.

The Learner hands a TrainJob to a TrainRunner and gets a TrainResult back; it never learns where the steps ran.
The default, InProcessRunner, runs LoraTrainer in this process (`blacksoil learn`, `blacksoil demo`). `blacksoil up
--learner` composes a runner whose steps run in a preemptible worker process that the unified scheduler places and
moves (platform.py; the learning pillar never imports the scheduler).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from blacksoil.learning.basemodel import BaseModelInfo
from blacksoil.learning.config import LearningConfig
from blacksoil.learning.samples import TrainSample

if TYPE_CHECKING:
    from blacksoil.learning.trainer import StepCallback, TrainResult

__all__ = ["InProcessRunner", "TrainJob", "TrainRunner"]


@dataclass(frozen=True)
class TrainJob:
    """One round's training: what to train on, how far, and where its files go."""

    samples: Sequence[TrainSample]
    """The round's draw from replay (anonymized token ids only)."""
    steps: int
    """Optimizer steps the round must reach in total (across any preemption)."""
    run_dir: Path
    """Checkpoints and progress files of this training; a restart resumes from the newest checkpoint here."""
    adapter_out: Path
    """Folder the trained peft adapter is written to (what the adapter store publishes)."""
    cfg: LearningConfig
    """Trainer settings (LoRA shape, batch, sequence length, objective, checkpoint interval)."""
    init_adapter: Path | None = None
    """Peft adapter folder training continues from (the served version); None = a fresh LoRA on the base."""


class TrainRunner(Protocol):
    """Runs a TrainJob to its last step and returns what the trainer did (per-trajectory NLL included)."""

    def run(self, job: TrainJob, on_step: StepCallback | None = None) -> TrainResult:
        """Train `job.steps` steps, write the adapter to `job.adapter_out`; `on_step(step, stats)` reports progress."""
        ...

    def scoring_cores(self) -> tuple[int, ...]:
        """Cores the eval gate's scoring engine may use now, so that it never runs on serving's cores (() = wherever
        the OS puts it: nothing else is scheduled on this machine)."""
        ...


class InProcessRunner:
    """The LoRA trainer in this process, on the cores this process has (learn and demo: phases never overlap)."""

    def __init__(self, info: BaseModelInfo) -> None:
        self.info = info

    def run(self, job: TrainJob, on_step: StepCallback | None = None) -> TrainResult:
        from blacksoil.learning.trainer import LoraTrainer

        trainer = LoraTrainer(self.info, job.cfg, job.run_dir, init_adapter=job.init_adapter)
        res = trainer.train(job.samples, job.steps, on_step=on_step)
        trainer.save_adapter(job.adapter_out)
        return res

    def scoring_cores(self) -> tuple[int, ...]:
        return ()  # learn and demo run one phase at a time: scoring may use every core
