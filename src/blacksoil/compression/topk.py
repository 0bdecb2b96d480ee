"""Top-k sparsification with classic error feedback: the biased baseline the priority-sampling hook is measured against.

Each rank keeps its k largest |g + e| and all ranks allgather the (index, value) pairs.
"""

# No `from __future__ import annotations`: DDP compares the hook's annotations with real objects.
import math
from dataclasses import dataclass, field

import torch
import torch.distributed as dist

from blacksoil.compression.hook import allreduce_mean
from blacksoil.compression.wire import allgather_into
from blacksoil.errors import ConfigError


@dataclass
class TopKState:
    """Hook state: density (fraction of each bucket sent), warm-up steps, residuals per bucket."""

    density: float = 0.01
    warmup_steps: int = 5
    min_compress_numel: int = 4096
    process_group: dist.ProcessGroup | None = None
    step: int = 0
    residuals: dict[int, torch.Tensor] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not 0.0 < self.density <= 1.0:
            raise ConfigError(f"top-k density={self.density} is out of range; use a fraction in (0, 1]")


def topk_values(x: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices and values of the k largest |x_i| (deterministic: a biased estimate of x)."""
    idx = torch.topk(x.abs(), k, sorted=False).indices
    return idx, x[idx]


def topk_hook(state: TopKState, bucket: dist.GradBucket) -> torch.futures.Future[torch.Tensor]:
    """DDP comm hook: top-k of gradient + residual, allgather of (int32 index, fp32 value) pairs."""
    group = state.process_group if state.process_group is not None else dist.group.WORLD
    assert group is not None, "torch.distributed is not initialised"
    buf = bucket.buffer()
    index = bucket.index()
    step = state.step
    if bucket.is_last():
        state.step += 1
    n = buf.numel()
    if step < state.warmup_steps or n < state.min_compress_numel:
        return allreduce_mean(buf, group)
    res = state.residuals.get(index)
    if res is None or res.numel() != n:
        res = torch.zeros_like(buf)
        state.residuals[index] = res
    x = buf + res
    k = max(1, math.ceil(state.density * n))
    idx, vals = topk_values(x, k)
    res.copy_(x)
    res[idx] = 0.0
    packed = torch.cat([idx.to(torch.int32).view(torch.uint8), vals.float().view(torch.uint8)])
    world = group.size()
    gathered = torch.empty(world * packed.numel(), dtype=torch.uint8, device=buf.device)
    work = allgather_into(gathered, packed, group)
    assert work is not None

    def decode(_: torch.futures.Future[object]) -> torch.Tensor:
        chunks = gathered.view(world, -1)
        all_idx = chunks[:, : 4 * k].flatten().view(torch.int32).long()
        all_vals = chunks[:, 4 * k :].flatten().view(torch.float32).to(buf.dtype)
        buf.zero_()
        buf.index_add_(0, all_idx, all_vals)
        return buf.div_(world)

    return work.get_future().then(decode)
