"""The DDP communication hook: adaptive priority-sampling compression with error feedback.

Register with `model.register_comm_hook(PrioritySamplingState(cfg), priority_sampling_hook)`; gloo and NCCL.
"""

# No `from __future__ import annotations`: DDP compares the hook's annotations with real objects.

from dataclasses import dataclass, field

import torch
import torch.distributed as dist

from blacksoil.compression import priority
from blacksoil.compression.config import CompressionConfig
from blacksoil.compression.wire import allgather_into

__all__ = ["BucketMemory", "PrioritySamplingState", "allreduce_mean", "priority_sampling_hook"]

_DTYPES = {"float32": torch.float32, "float16": torch.float16}


@dataclass
class BucketMemory:
    """What one rank remembers about one DDP bucket between steps."""

    residual: torch.Tensor | None = None
    shared_weights: torch.Tensor | None = None
    #: `shared` scheme: multiplies the variance target fed to the budget, steered by the measured variance.
    target_gain: float = 1.0
    #: Relative variance measured on the last compressed step (the HT estimate from the averaged values).
    last_rel_variance: float = 0.0


@dataclass
class PrioritySamplingState:
    """Hook state: the config, the process group, per-bucket memory and the step counter."""

    config: CompressionConfig = field(default_factory=CompressionConfig)
    process_group: dist.ProcessGroup | None = None
    step: int = 0
    buckets: dict[int, BucketMemory] = field(default_factory=dict)
    #: (elements compressed, elements sent as k) over the run, to report the mean density.
    kept: int = 0
    seen: int = 0

    def group(self) -> dist.ProcessGroup:
        """The process group the hook talks over (WORLD unless one was given)."""
        pg = self.process_group if self.process_group is not None else dist.group.WORLD
        assert pg is not None, "torch.distributed is not initialised"
        return pg

    def memory(self, bucket_index: int, numel: int, like: torch.Tensor) -> BucketMemory:
        """This bucket's memory; reset when DDP rebuilt its buckets and the size changed."""
        mem = self.buckets.get(bucket_index)
        if mem is None or (mem.residual is not None and mem.residual.numel() != numel) or (
            mem.shared_weights is not None and mem.shared_weights.numel() != numel
        ):
            mem = BucketMemory()
            self.buckets[bucket_index] = mem
        if mem.residual is None and self.config.error_feedback:
            mem.residual = torch.zeros(numel, dtype=like.dtype, device=like.device)
        return mem

    def can_compress(self, numel: int) -> bool:
        """Compression on, warm-up over and the bucket large enough to be worth it."""
        c = self.config
        return c.enabled and self.step >= c.warmup_steps and numel >= max(c.min_compress_numel, 2)

    def k_bounds(self, numel: int) -> tuple[int, int]:
        """The [k_min, k_max] window of the adaptive budget for a bucket of `numel` elements."""
        c = self.config
        return max(1, int(c.min_density * numel)), max(1, int(c.max_density * numel))

    def generator(self, bucket_index: int, device: torch.device, shared: bool) -> torch.Generator:
        """A generator seeded from (seed, step, bucket) and, unless shared by all ranks, the rank."""
        rank = 0 if shared else dist.get_rank(self.group())
        g = torch.Generator(device=device)
        g.manual_seed(((self.config.seed * 1_000_003 + self.step) * 1_009 + bucket_index) * 997 + rank)
        return g


def allreduce_mean(tensor: torch.Tensor, group: dist.ProcessGroup) -> torch.futures.Future[torch.Tensor]:
    """Exact averaging, in the same order of operations as DDP's built-in allreduce (divide, then sum)."""
    tensor.div_(group.size())
    fut = dist.all_reduce(tensor, group=group, async_op=True).get_future()
    return fut.then(lambda f: f.value()[0])


def priority_sampling_hook(state: PrioritySamplingState, bucket: dist.GradBucket) -> torch.futures.Future[torch.Tensor]:
    """DDP comm hook: exact allreduce while warming up or for small buckets, else the configured scheme."""
    buf = bucket.buffer()
    group = state.group()
    index = bucket.index()
    fut = _dispatch(state, index, buf, group)
    if bucket.is_last():
        # Counted after the last bucket: every bucket of one step sees the same step number (shared seeds).
        state.step += 1
    return fut


def _dispatch(
    state: PrioritySamplingState, index: int, buf: torch.Tensor, group: dist.ProcessGroup
) -> torch.futures.Future[torch.Tensor]:
    """Pick exact averaging or one of the two compressed schemes for this bucket and step."""
    c = state.config
    tracked = c.enabled and buf.numel() >= max(c.min_compress_numel, 2)
    mem = state.memory(index, buf.numel(), buf) if tracked else None
    if mem is None or not state.can_compress(buf.numel()) or (c.scheme == "shared" and mem.shared_weights is None):
        fut = allreduce_mean(buf, group)
        if mem is not None and c.scheme == "shared":
            # Exact steps seed the shared weights that the compressed steps draw from.
            remember_in = mem

            def remember(f: torch.futures.Future[torch.Tensor]) -> torch.Tensor:
                return _remember_average(remember_in, f.value(), 1.0)

            fut = fut.then(remember)
        return fut
    if c.scheme == "allgather":
        return _allgather_scheme(state, index, buf, mem, group)
    return _shared_scheme(state, index, buf, mem, group)


def _remember_average(mem: BucketMemory, averaged: torch.Tensor, ema_keep: float) -> torch.Tensor:
    """Fold |averaged gradient| (identical on every rank) into the shared weights; return it unchanged."""
    mag = averaged.detach().abs()
    if mem.shared_weights is None or ema_keep >= 1.0:
        mem.shared_weights = mag.clone()
    else:
        mem.shared_weights.mul_(ema_keep).add_(mag, alpha=1.0 - ema_keep)
    return averaged


def _with_residual(buf: torch.Tensor, mem: BucketMemory) -> torch.Tensor:
    """x = g + e: the gradient plus what earlier steps failed to send (a copy when EF is on)."""
    if mem.residual is None:
        return buf.clone()
    return buf + mem.residual


def _allgather_scheme(
    state: PrioritySamplingState, index: int, buf: torch.Tensor, mem: BucketMemory, group: dist.ProcessGroup
) -> torch.futures.Future[torch.Tensor]:
    """Scheme (a): each rank samples its own indices by priority and all ranks gather every (index, value)."""
    x = _with_residual(buf, mem)
    n = x.numel()
    k_lo, k_hi = state.k_bounds(n)
    k_local = priority.budget(x.abs(), state.config.target_rel_variance, k_lo, k_hi)
    # All ranks must contribute equal-sized chunks to one allgather: agree on the largest k (4 bytes each).
    k_t = torch.tensor([k_local], dtype=torch.int32, device=x.device)
    dist.all_reduce(k_t, op=dist.ReduceOp.MAX, group=group)
    k = int(k_t.item())
    sample = priority.draw(x.abs(), k, state.generator(index, x.device, shared=False))
    values = priority.estimate_values(x, sample)
    if mem.residual is not None:
        mem.residual.copy_(x)
        mem.residual.index_add_(0, sample.indices, values, alpha=-1.0)
    state.kept += k
    state.seen += n
    vdtype = _DTYPES[state.config.value_dtype]
    packed = torch.cat([sample.indices.to(torch.int32).view(torch.uint8), values.to(vdtype).view(torch.uint8)])
    world = group.size()
    gathered = torch.empty(world * packed.numel(), dtype=torch.uint8, device=x.device)
    work = allgather_into(gathered, packed, group)
    assert work is not None

    def decode(_: torch.futures.Future[object]) -> torch.Tensor:
        chunks = gathered.view(world, -1)
        idx = chunks[:, : 4 * k].flatten().view(torch.int32).long()
        vals = chunks[:, 4 * k :].flatten().view(vdtype).to(buf.dtype)
        buf.zero_()
        buf.index_add_(0, idx, vals)
        return buf.div_(world)

    return work.get_future().then(decode)


def _shared_scheme(
    state: PrioritySamplingState, index: int, buf: torch.Tensor, mem: BucketMemory, group: dist.ProcessGroup
) -> torch.futures.Future[torch.Tensor]:
    """Scheme (b): every rank draws the SAME indices from shared weights, then one allreduce of k values.

    The weights are a running average of |averaged gradient| (bit-identical on all ranks) floored at
    floor_frac * mean, and the generator is seeded without the rank, so no index crosses the wire.
    """
    assert mem.shared_weights is not None, "shared weights are set by the exact steps before compression"
    c = state.config
    x = _with_residual(buf, mem)
    n = x.numel()
    w = torch.clamp(mem.shared_weights, min=c.floor_frac * float(mem.shared_weights.mean()) + 1e-30)
    if c.sketch_block > 1:
        w = _refresh_with_sketch(w, x, c.sketch_block, group, _DTYPES[c.value_dtype])
    k_lo, k_hi = state.k_bounds(n)
    k = priority.budget(w, c.target_rel_variance * mem.target_gain, k_lo, k_hi)
    sample = priority.draw(w, k, state.generator(index, x.device, shared=True))
    scale = priority.importance_scale(w, sample)
    scaled = torch.gather(x, 0, sample.indices) * scale
    if mem.residual is not None:
        mem.residual.copy_(x)
        mem.residual.index_add_(0, sample.indices, scaled, alpha=-1.0)
    state.kept += k
    state.seen += n
    world = group.size()
    vdtype = _DTYPES[c.value_dtype]
    payload = (scaled / world).to(vdtype)
    work = dist.all_reduce(payload, group=group, async_op=True)
    assert work is not None

    def decode(_: torch.futures.Future[object]) -> torch.Tensor:
        buf.zero_()
        buf.scatter_(0, sample.indices, payload.to(buf.dtype))
        averaged = payload.to(buf.dtype)
        _learn_magnitudes(mem, sample, averaged / scale, c.ema_beta)
        _steer_budget(mem, averaged, scale, c.target_rel_variance)
        return buf

    return work.get_future().then(decode)


def _refresh_with_sketch(
    w: torch.Tensor, x: torch.Tensor, block: int, group: dist.ProcessGroup, dtype: torch.dtype
) -> torch.Tensor:
    """Rescale the shared weights block by block to this step's mean |x| over ranks (n / block values sent).

    The stale weights keep the shape inside each block; the sketch, identical on every rank after the
    allreduce, gives each block its current mass. The result is still shared, so indices stay shared.
    """
    n = x.numel()
    pad = (-n) % block
    world = group.size()
    local = torch.nn.functional.pad(x.abs(), (0, pad)).view(-1, block).sum(1)
    sketch = (local / world).to(dtype)
    dist.all_reduce(sketch, group=group)
    stale = torch.nn.functional.pad(w, (0, pad)).view(-1, block)
    ratio = sketch.to(w.dtype) / stale.sum(1).clamp(min=1e-30)
    fresh = (stale * ratio.unsqueeze(1)).flatten()[:n]
    return torch.clamp(fresh, min=0.05 * float(fresh.mean()) + 1e-30)


def _steer_budget(mem: BucketMemory, averaged: torch.Tensor, scale: torch.Tensor, target: float) -> None:
    """Measure this step's relative variance and correct the next budget if the shared weights misjudged it.

    With inclusion probabilities pi = 1/scale and values y = xbar/pi, the Horvitz-Thompson estimates are
    sum y^2 (1 - pi) for the variance and sum y^2 pi for ||xbar||^2. Both come from the allreduced values,
    so every rank computes the same gain and draws the same k next step.
    """
    pi = 1.0 / scale
    y2 = averaged.double() ** 2
    norm2 = float((y2 * pi).sum())
    if norm2 <= 0.0 or not torch.isfinite(y2).all():
        return
    rel = float((y2 * (1.0 - pi)).sum()) / norm2
    mem.last_rel_variance = rel
    # Multiplicative steering with a bounded step: above target -> smaller proxy target -> larger k.
    step = min(2.0, max(0.5, (target / max(rel, 1e-12)) ** 0.5))
    mem.target_gain = min(10.0, max(1e-3, mem.target_gain * step))


def _learn_magnitudes(mem: BucketMemory, sample: priority.PrioritySample, exact: torch.Tensor, beta: float) -> None:
    """Move the shared weights of the drawn indices toward |average| there, known exactly after the allreduce.

    Only drawn indices are updated and with the de-inflated value, so one lucky draw of a small weight
    does not turn into a spike; the others keep their last known magnitude.
    """
    assert mem.shared_weights is not None
    w = mem.shared_weights
    old = torch.gather(w, 0, sample.indices)
    w.scatter_(0, sample.indices, beta * old + (1.0 - beta) * exact.abs())
