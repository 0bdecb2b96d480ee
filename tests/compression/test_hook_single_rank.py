"""The hook's code paths in one gloo process (world size 1): allgather decoding, the block sketch, bad buckets.

World size 1 is a real edge case (a view of a 1-row gather once failed on CUDA); it also runs in milliseconds.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel as DDP

from blacksoil.compression.config import CompressionConfig
from blacksoil.compression.hook import PrioritySamplingState, priority_sampling_hook
from blacksoil.compression.wire import WireCount, collective_meter
from blacksoil.distributed import free_port


@pytest.fixture(scope="module")
def one_rank() -> Iterator[None]:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{free_port()}", rank=0, world_size=1)
    yield
    dist.destroy_process_group()


def _train(cfg: CompressionConfig, steps: int = 8) -> tuple[PrioritySamplingState, WireCount, list[float]]:
    torch.manual_seed(0)
    model = DDP(nn.Sequential(nn.Linear(16, 256), nn.Tanh(), nn.Linear(256, 4)))
    state = PrioritySamplingState(cfg)
    model.register_comm_hook(state, priority_sampling_hook)
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    count, losses = WireCount(), []
    for step in range(steps):
        x = torch.randn(32, 16, generator=torch.Generator().manual_seed(step))
        loss = nn.functional.mse_loss(model(x), x[:, :4].tanh())
        opt.zero_grad()
        with collective_meter(count):
            loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    return state, count, losses


@pytest.mark.usefixtures("one_rank")
@pytest.mark.parametrize(
    "cfg",
    [
        CompressionConfig(scheme="allgather", min_compress_numel=1000),
        CompressionConfig(scheme="allgather", min_compress_numel=1000, value_dtype="float32"),
        CompressionConfig(scheme="shared", min_compress_numel=1000),
        CompressionConfig(scheme="shared", min_compress_numel=1000, sketch_block=16),
        CompressionConfig(scheme="shared", min_compress_numel=1000, error_feedback=True, target_rel_variance=0.5),
    ],
    ids=["allgather-fp16", "allgather-fp32", "shared", "shared-sketch", "shared-ef"],
)
def test_every_path_trains_and_sends_less(cfg: CompressionConfig) -> None:
    state, count, losses = _train(cfg)
    n = 16 * 256 + 256 + 256 * 4 + 4
    assert 0.0 < state.kept / state.seen <= cfg.max_density + 1e-9
    assert count.payload < 8 * 4 * n * 0.6, "7 compressed steps + 1 exact one must cost well under 8 exact ones"
    assert all(torch.isfinite(torch.tensor(losses))) and losses[-1] < losses[0]
    if cfg.scheme == "shared":
        mem = next(iter(state.buckets.values()))
        assert mem.last_rel_variance > 0.0, "the measured variance steers the next budget"


@pytest.mark.usefixtures("one_rank")
def test_small_buckets_and_disabled_hook_send_everything() -> None:
    _, count, _ = _train(CompressionConfig(min_compress_numel=10**6), steps=3)
    n = 16 * 256 + 256 + 256 * 4 + 4
    assert count.payload == 3 * 4 * n
