"""Data-parallel LoRA training: torch.distributed with gloo, one trainer per rank.

Each rank gets its slice of every batch; DDP all-reduces the LoRA gradients, through a comm hook when one is named.
The ranks are local processes on 127.0.0.1, unless torch's rendezvous environment (RANK, WORLD_SIZE, MASTER_ADDR,
MASTER_PORT: what the Kubernetes operator gives each pod of a LearningJob's gang, and what torchrun sets) is set:
then this process is that one rank and meets the others at MASTER_ADDR:MASTER_PORT.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from blacksoil.distributed import Rendezvous, process_group, spawn
from blacksoil.errors import ConfigError
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


ENV_VARS = ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


def env_rendezvous(env: Mapping[str, str] | None = None) -> tuple[int, Rendezvous] | None:
    """(this process's rank, its group's rendezvous) from torch's environment, or None when RANK is not set."""
    env = os.environ if env is None else env
    given = {k: env.get(k, "") for k in ENV_VARS}
    if not given["RANK"]:
        return None
    missing = [k for k, v in given.items() if not v]
    if missing:
        raise ConfigError(f"{', '.join(missing)} not set while {', '.join(k for k in ENV_VARS if k not in missing)} "
                          "are: a rank needs all four of RANK, WORLD_SIZE, MASTER_ADDR and MASTER_PORT")
    try:
        rank, world, port = int(given["RANK"]), int(given["WORLD_SIZE"]), int(given["MASTER_PORT"])
    except ValueError:
        raise ConfigError(f"RANK={given['RANK']!r}, WORLD_SIZE={given['WORLD_SIZE']!r} and MASTER_PORT="
                          f"{given['MASTER_PORT']!r} must be integers") from None
    if not 0 <= rank < world:
        raise ConfigError(f"RANK={rank} must be in [0, WORLD_SIZE={world})")
    return rank, Rendezvous(port, world, host=given["MASTER_ADDR"])


def train_ddp(info: BaseModelInfo, cfg: LearningConfig, run_dir: Path, samples: Sequence[TrainSample], steps: int,
              *, world_size: int = 2, comm_hook: str | None = None) -> list[dict[str, Any]]:
    """Train with `world_size` gloo processes; returns each rank's {steps, resumed_from, losses, lora}.

    The peft adapter of rank 0 lands in `run_dir/adapter`. With torch's rendezvous environment set (env_rendezvous),
    this process trains as its one rank of WORLD_SIZE (`world_size` is not used) and returns only its own result.
    """
    import torch

    joined = env_rendezvous()
    if joined is not None:
        rank, rdv = joined
        with tempfile.TemporaryDirectory() as tmp:
            _rank_main(rank, rdv, info, cfg, run_dir, list(samples), steps, comm_hook, Path(tmp))
            return [torch.load(Path(tmp) / f"rank{rank}.pt", weights_only=False)]
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
