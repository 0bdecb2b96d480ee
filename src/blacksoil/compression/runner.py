"""Training every method on every workload in two gloo processes, with bytes counted per step.

One process pair runs everything in turn (same seed, same batches per method); rank 0 writes the results as JSON.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel as DDP

from blacksoil.compression.config import CompressionConfig
from blacksoil.compression.hook import PrioritySamplingState, priority_sampling_hook
from blacksoil.compression.topk import TopKState, topk_hook
from blacksoil.compression.wire import WireCount, collective_meter, loopback_bytes
from blacksoil.compression.workloads import heldout_loss, workload
from blacksoil.distributed import Rendezvous, process_group
from blacksoil.errors import ConfigError

METHODS = (
    "fp32_allreduce", "fp16", "powersgd_r1", "powersgd_r2", "topk_ef", "ours_allgather", "ours_shared",
    "ours_shared_sketch16",
)


@dataclass
class RunSpec:
    """What the two processes run: workloads, steps per workload, methods, and our hook's settings."""

    workloads: list[str]
    steps: dict[str, int]
    methods: list[str]
    eval_every: dict[str, int]
    config: dict[str, Any] = field(default_factory=dict)
    topk_density: float = 0.01


@dataclass
class MethodResult:
    """One (workload, method) run as seen from rank 0 (payload counts are the same on every rank)."""

    workload: str
    method: str
    steps: int
    payload_bytes: int
    ring_sent_bytes: float
    loopback_bytes: int | None
    wall_s: float
    final_loss: float
    train_loss: list[float]
    #: (step, held-out loss, cumulative payload bytes at that step)
    curve: list[tuple[int, float, int]]
    density: float | None


def attach(method: str, model: DDP, spec: RunSpec) -> PrioritySamplingState | None:
    """Register `method`'s comm hook on the DDP model (plain DDP allreduce for fp32_allreduce)."""
    from torch.distributed.algorithms.ddp_comm_hooks import default_hooks, powerSGD_hook

    cfg = CompressionConfig(**spec.config)
    if method == "fp32_allreduce":
        # The same arithmetic as DDP's built-in allreduce (tested bit-identical), but visible to the byte meter.
        model.register_comm_hook(None, default_hooks.allreduce_hook)
    elif method == "fp16":
        model.register_comm_hook(None, default_hooks.fp16_compress_hook)
    elif method.startswith("powersgd_r"):
        state = powerSGD_hook.PowerSGDState(
            process_group=None,
            matrix_approximation_rank=int(method[-1]),
            start_powerSGD_iter=max(2, cfg.warmup_steps),
            min_compression_rate=2,
            use_error_feedback=True,
            warm_start=True,
            random_seed=cfg.seed,
        )
        model.register_comm_hook(state, powerSGD_hook.powerSGD_hook)
    elif method == "topk_ef":
        model.register_comm_hook(
            TopKState(spec.topk_density, cfg.warmup_steps, cfg.min_compress_numel), topk_hook
        )
    elif method.startswith("ours_"):
        scheme = "allgather" if method == "ours_allgather" else "shared"
        sketch = 16 if method.endswith("_sketch16") else cfg.sketch_block
        ours = PrioritySamplingState(cfg.model_copy(update={"scheme": scheme, "sketch_block": sketch}))
        model.register_comm_hook(ours, priority_sampling_hook)
        return ours
    else:
        raise ConfigError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
    return None


def train_one(
    rank: int, wl_name: str, method: str, spec: RunSpec, progress: Callable[[int], None]
) -> MethodResult:
    """Train one method on one workload for spec.steps[wl_name] steps; bytes counted around the loop only."""
    wl = workload(wl_name)
    # The models have no buffers, so DDP syncs nothing per step; its initial broadcast happens here, uncounted.
    model = DDP(wl.make_model())
    ours = attach(method, model, spec)
    opt = wl.make_optimizer(model)
    steps, every = spec.steps[wl_name], spec.eval_every[wl_name]
    # Cosine decay to zero: the final loss then reflects where each method converged, not the last batch.
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps)
    count = WireCount()
    curve: list[tuple[int, float, int]] = []
    train_loss: list[float] = []
    if rank == 0:
        curve.append((0, heldout_loss(model.module, wl), 0))
    dist.barrier()
    lo0 = loopback_bytes()
    t0 = time.perf_counter()
    with collective_meter(count):
        for step in range(steps):
            x, y = wl.batch(rank, step)
            loss = wl.loss(model(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            train_loss.append(float(loss.detach()))
            if rank == 0 and ((step + 1) % every == 0 or step + 1 == steps):
                curve.append((step + 1, heldout_loss(model.module, wl), count.payload))
            progress(step + 1)
    wall = time.perf_counter() - t0
    dist.barrier()
    lo1 = loopback_bytes()
    density = ours.kept / ours.seen if ours is not None and ours.seen else None
    return MethodResult(
        wl_name, method, steps, count.payload, count.ring_sent,
        None if lo0 is None or lo1 is None else lo1 - lo0, wall,
        curve[-1][1] if curve else float("nan"), train_loss, curve, density,
    )


def worker(rank: int, rdv: Rendezvous, spec: RunSpec, out: str, queue: Any) -> None:
    """One process: join the gloo group, run every (workload, method), rank 0 writes the results."""
    torch.set_num_threads(1)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    with process_group(rdv, rank):
        results = []
        for wl_name in spec.workloads:
            for method in spec.methods:
                def progress(step: int, wl_name: str = wl_name, method: str = method) -> None:
                    if rank == 0 and queue is not None:
                        queue.put((wl_name, method, step))

                results.append(asdict(train_one(rank, wl_name, method, spec, progress)))
        if rank == 0:
            Path(out).write_text(json.dumps(results))
