"""The hook inside real DDP on two gloo processes: bit-identical when off, consistent and cheap when on.

One spawn runs every check (process start-up dominates on a small machine); rank 0 writes what it saw.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn
from torch.nn.parallel import DistributedDataParallel as DDP

from blacksoil.compression.config import CompressionConfig
from blacksoil.compression.hook import PrioritySamplingState, priority_sampling_hook
from blacksoil.compression.topk import TopKState, topk_hook
from blacksoil.compression.wire import WireCount, collective_meter
from blacksoil.distributed import free_port

STEPS = 12


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(32, 128), nn.Tanh(), nn.Linear(128, 128), nn.Tanh(), nn.Linear(128, 4))


def _batch(rank: int, step: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1000 * rank + step)
    x = torch.randn(16, 32, generator=g)
    return x, (x[:, :4] * 2.0).sin()


def _train(model: DDP, rank: int, steps: int, count: WireCount | None = None) -> list[float]:
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    losses = []
    for step in range(steps):
        x, y = _batch(rank, step)
        loss = nn.functional.mse_loss(model(x), y)
        opt.zero_grad()
        if count is None:
            loss.backward()
        else:
            with collective_meter(count):
                loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    return losses


def _flat(model: nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().flatten() for p in model.parameters()])


def _same_on_all_ranks(t: torch.Tensor) -> bool:
    gathered = [torch.empty_like(t) for _ in range(dist.get_world_size())]
    dist.all_gather(gathered, t)
    return all(torch.equal(g, gathered[0]) for g in gathered)


def _hooked(cfg: CompressionConfig, bucket_cap_mb: float = 25.0) -> tuple[DDP, PrioritySamplingState]:
    model = DDP(_model(), bucket_cap_mb=bucket_cap_mb)
    state = PrioritySamplingState(cfg)
    model.register_comm_hook(state, priority_sampling_hook)
    return model, state


def _worker(rank: int, port: int, out: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    seen: dict[str, Any] = {}
    plain = DDP(_model())
    _train(plain, rank, STEPS)
    reference = _flat(plain.module)
    off, _ = _hooked(CompressionConfig(enabled=False))
    _train(off, rank, STEPS)
    seen["off_bit_identical"] = torch.equal(_flat(off.module), reference)
    warm, _ = _hooked(CompressionConfig(warmup_steps=STEPS))
    _train(warm, rank, STEPS)
    seen["warmup_bit_identical"] = torch.equal(_flat(warm.module), reference)

    n = sum(p.numel() for p in _model().parameters())
    for scheme in ("shared", "allgather"):
        # Small buckets: several per step, and DDP rebuilds them after step 1; min_compress_numel keeps
        # the smallest exact, so both paths run in one step.
        cfg = CompressionConfig(scheme=scheme, min_compress_numel=2000, warmup_steps=2, max_density=0.1)
        model, state = _hooked(cfg, bucket_cap_mb=0.02)
        count = WireCount()
        losses = _train(model, rank, STEPS, count)
        seen[scheme] = {
            "same_params": _same_on_all_ranks(_flat(model.module)),
            "payload": count.payload,
            "first_loss": sum(losses[:3]) / 3,
            "last_loss": sum(losses[-3:]) / 3,
            "density": state.kept / max(1, state.seen),
            "buckets": len(state.buckets),
        }
    model = DDP(_model())
    model.register_comm_hook(TopKState(density=0.05, warmup_steps=2, min_compress_numel=2000), topk_hook)
    count = WireCount()
    _train(model, rank, STEPS, count)
    seen["topk"] = {"same_params": _same_on_all_ranks(_flat(model.module)), "payload": count.payload}
    seen["allreduce_payload"] = 4 * n * STEPS
    if rank == 0:
        Path(out).write_text(json.dumps(seen))
    # Both ranks finish every collective before either tears gloo down: a peer closing its pairs mid-operation
    # aborts the other process ("terminate called without an active exception", seen once under load).
    dist.barrier()
    dist.destroy_process_group()


def test_hook_on_two_gloo_ranks(tmp_path: Path) -> None:
    out = tmp_path / "seen.json"
    mp.spawn(_worker, args=(free_port(), str(out)), nprocs=2, join=True)
    seen = json.loads(out.read_text())
    assert seen["off_bit_identical"], "compression disabled must reproduce plain DDP bit for bit"
    assert seen["warmup_bit_identical"], "warm-up steps must reproduce plain DDP bit for bit"
    full = seen["allreduce_payload"]
    for scheme in ("shared", "allgather"):
        s = seen[scheme]
        assert s["same_params"], f"{scheme}: ranks diverged"
        assert s["buckets"] >= 2
        assert 0.0 < s["density"] <= 0.1
        assert s["payload"] < 0.5 * full, f"{scheme}: {s['payload']} bytes vs {full} uncompressed"
        assert s["last_loss"] < s["first_loss"], f"{scheme}: loss did not go down"
    # The shared scheme sends no indices and one allreduce: fewer bytes than the allgather scheme.
    assert seen["shared"]["payload"] < seen["allgather"]["payload"]
    assert seen["topk"]["same_params"] and seen["topk"]["payload"] < full
