"""Data-parallel LoRA training across local processes: torch.distributed with gloo, one trainer per rank.

Each rank gets its slice of every batch; DDP all-reduces the LoRA gradients, through a comm hook when one is named.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from blacksoil.distributed import Rendezvous, process_group, spawn
from blacksoil.learning.basemodel import BaseModelInfo
from blacksoil.learning.config import LearningConfig
from blacksoil.learning.samples import TrainSample
from blacksoil.learning.trainer import LoraTrainer


def _rank_main(rank: int, rdv: Rendezvous, info: BaseModelInfo, cfg: LearningConfig, run_dir: Path,
               samples: Sequence[TrainSample], steps: int, comm_hook: str | None, out: Path) -> None:
    import torch

    with process_group(rdv, rank):
        trainer = LoraTrainer(info, cfg, run_dir, rank=rank, world_size=rdv.world_size, comm_hook=comm_hook)
        res = trainer.train(samples, steps)
        torch.save({"steps": res.steps, "resumed_from": res.resumed_from, "losses": res.losses,
                    "lora": {k: v.detach().clone() for k, v in trainer.params.items()}}, out / f"rank{rank}.pt")
        if rank == 0:
            trainer.save_adapter(run_dir / "adapter")


def train_ddp(info: BaseModelInfo, cfg: LearningConfig, run_dir: Path, samples: Sequence[TrainSample], steps: int,
              *, world_size: int = 2, comm_hook: str | None = None) -> list[dict[str, Any]]:
    """Train with `world_size` gloo processes; returns each rank's {steps, resumed_from, losses, lora}.

    The peft adapter of rank 0 lands in `run_dir/adapter`.
    """
    import torch

    rdv = Rendezvous.local(world_size)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        spawn(_rank_main, rdv, (info, cfg, run_dir, list(samples), steps, comm_hook, out), label="DDP")
        return [torch.load(out / f"rank{r}.pt", weights_only=False) for r in range(world_size)]


def allreduce(process_group: Any) -> tuple[Any, Any]:
    """The plain all-reduce hook (what DDP does without a hook), as a comm-hook factory."""
    from torch.distributed.algorithms.ddp_comm_hooks import default_hooks

    return process_group, default_hooks.allreduce_hook


def fp16_compress(process_group: Any) -> tuple[Any, Any]:
    """torch's fp16 compression hook, as a comm-hook factory (an example of the pluggable slot)."""
    from torch.distributed.algorithms.ddp_comm_hooks import default_hooks

    return process_group, default_hooks.fp16_compress_hook
