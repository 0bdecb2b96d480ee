"""Data-parallel LoRA training across local processes: torch.distributed with gloo, one trainer per rank.

Each rank gets its slice of every batch; DDP all-reduces the LoRA gradients, through a comm hook when one is named.
"""

from __future__ import annotations

import os
import socket
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from blacksoil.errors import InternalError
from blacksoil.learning.basemodel import BaseModelInfo
from blacksoil.learning.config import LearningConfig
from blacksoil.learning.samples import TrainSample
from blacksoil.learning.trainer import LoraTrainer


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _rank_main(rank: int, world_size: int, port: int, info: BaseModelInfo, cfg: LearningConfig, run_dir: Path,
               samples: Sequence[TrainSample], steps: int, comm_hook: str | None, out: Path) -> None:
    import torch
    import torch.distributed as dist

    os.environ["MASTER_ADDR"] = "127.0.0.1"
    os.environ["MASTER_PORT"] = str(port)
    dist.init_process_group("gloo", rank=rank, world_size=world_size)
    try:
        trainer = LoraTrainer(info, cfg, run_dir, rank=rank, world_size=world_size, comm_hook=comm_hook)
        res = trainer.train(samples, steps)
        torch.save({"steps": res.steps, "resumed_from": res.resumed_from, "losses": res.losses,
                    "lora": {k: v.detach().clone() for k, v in trainer.params.items()}}, out / f"rank{rank}.pt")
        if rank == 0:
            trainer.save_adapter(run_dir / "adapter")
        dist.barrier()
    finally:
        dist.destroy_process_group()


def train_ddp(info: BaseModelInfo, cfg: LearningConfig, run_dir: Path, samples: Sequence[TrainSample], steps: int,
              *, world_size: int = 2, comm_hook: str | None = None) -> list[dict[str, Any]]:
    """Train with `world_size` gloo processes; returns each rank's {steps, resumed_from, losses, lora}.

    The peft adapter of rank 0 lands in `run_dir/adapter`.
    """
    import torch
    import torch.multiprocessing as mp

    port = _free_port()
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        try:
            mp.spawn(_rank_main, args=(world_size, port, info, cfg, run_dir, list(samples), steps, comm_hook, out),
                     nprocs=world_size, join=True)
        except mp.ProcessRaisedException as e:
            raise InternalError(f"a DDP rank failed: {str(e).strip().splitlines()[-1]}") from None
        return [torch.load(out / f"rank{r}.pt", weights_only=False) for r in range(world_size)]


def allreduce(process_group: Any) -> tuple[Any, Any]:
    """The plain all-reduce hook (what DDP does without a hook), as a comm-hook factory."""
    from torch.distributed.algorithms.ddp_comm_hooks import default_hooks

    return process_group, default_hooks.allreduce_hook


def fp16_compress(process_group: Any) -> tuple[Any, Any]:
    """torch's fp16 compression hook, as a comm-hook factory (an example of the pluggable slot)."""
    from torch.distributed.algorithms.ddp_comm_hooks import default_hooks

    return process_group, default_hooks.fp16_compress_hook
