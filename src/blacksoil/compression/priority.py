"""Priority sampling (Duffield, Lund & Thorup, J. ACM 2007): the sparsifier behind the compression hook.

Pure tensor math with no communication: drawing a sample, the unbiased estimates, their variance, the budget k.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class PrioritySample:
    """The k kept indices and the threshold tau (the (k+1)-th largest priority; 0 when everything is kept)."""

    indices: torch.Tensor
    tau: torch.Tensor


def draw(weights: torch.Tensor, k: int, generator: torch.Generator | None = None) -> PrioritySample:
    """Keep the k largest priorities q_i = w_i / u_i, u_i ~ U(0, 1]; works on the last dimension (batched).

    Items with w_i = 0 get priority 0 and are never kept while a positive weight is left.
    """
    n = weights.shape[-1]
    if k >= n:
        idx = torch.arange(n, device=weights.device).expand(weights.shape).clone()
        return PrioritySample(idx, torch.zeros(weights.shape[:-1], dtype=weights.dtype, device=weights.device))
    # 1 - U[0, 1) lies in (0, 1]: no division by zero.
    u = 1.0 - torch.rand(weights.shape, generator=generator, dtype=weights.dtype, device=weights.device)
    q = weights / u
    top = torch.topk(q, k + 1, dim=-1, sorted=True)
    return PrioritySample(top.indices[..., :k], top.values[..., k])


def estimate_values(x: torch.Tensor, sample: PrioritySample) -> torch.Tensor:
    """Unbiased estimates sign(x_i) * max(|x_i|, tau) of the kept x_i, when the weights were |x|."""
    kept = torch.gather(x, -1, sample.indices)
    tau = sample.tau.unsqueeze(-1)
    return torch.sign(kept) * torch.maximum(kept.abs(), tau)


def importance_scale(weights: torch.Tensor, sample: PrioritySample) -> torch.Tensor:
    """max(1, tau / w_i) for the kept indices: x_i times this is unbiased for ANY x fixed before the draw.

    Given the other items' priorities, item i is kept with probability min(1, w_i / tau), so dividing by it
    (the Horvitz-Thompson weight) makes the estimate of every kept coordinate unbiased.
    """
    kept_w = torch.gather(weights, -1, sample.indices)
    tau = sample.tau.unsqueeze(-1)
    return torch.clamp(tau / kept_w, min=1.0)


def densify(n: int, sample: PrioritySample, values: torch.Tensor) -> torch.Tensor:
    """A length-n vector (batched on the last dim) holding `values` at the sample's indices, zero elsewhere."""
    out = torch.zeros((*sample.indices.shape[:-1], n), dtype=values.dtype, device=values.device)
    return out.scatter_(-1, sample.indices, values)


def variance_estimate(weights: torch.Tensor, sample: PrioritySample) -> torch.Tensor:
    """Unbiased estimate of the total variance of the sample's estimates: sum over kept of tau * max(0, tau - w_i)."""
    kept_w = torch.gather(weights, -1, sample.indices)
    tau = sample.tau.unsqueeze(-1)
    return (tau * torch.clamp(tau - kept_w, min=0.0)).sum(-1)


def budget(weights: torch.Tensor, target_rel_variance: float, k_min: int, k_max: int) -> int:
    """Smallest k whose threshold sampling keeps the variance <= target * ||w||^2, clamped to [k_min, k_max].

    For a threshold tau, item i is kept with probability min(1, w_i / tau) and its estimate has variance
    w_i (tau - w_i) when w_i < tau, 0 otherwise. So V(tau) = tau * T - Q and the expected count is
    k(tau) = m + T / tau, where m items are >= tau and T, Q are the sum and sum of squares of the rest.
    V grows with tau and k shrinks, so we take the largest tau with V(tau) <= target: exact, one sort.
    """
    w = weights.detach().flatten().double()
    n = w.numel()
    k_max = max(1, min(k_max, n))
    k_min = max(1, min(k_min, k_max))
    total_sq = float((w * w).sum())
    if not math.isfinite(total_sq):
        return k_max  # a diverged step: no budget rule applies, send the most we may
    if n == 0 or total_sq == 0.0:
        return k_min
    s = torch.sort(w, descending=True).values
    # tail_sum[j] = sum(s[j:]), tail_sq[j] = sum(s[j:]^2), with a trailing 0.
    tail_sum = torch.cat([s.flip(0).cumsum(0).flip(0), s.new_zeros(1)])
    tail_sq = torch.cat([(s * s).flip(0).cumsum(0).flip(0), s.new_zeros(1)])
    allowed = target_rel_variance * total_sq
    # Variance at tau = s[j]: the items after j are the uncertain ones.
    v_at = s * tail_sum[1:] - tail_sq[1:]
    ok = torch.nonzero(v_at <= allowed)
    j = int(ok[0]) if ok.numel() else n - 1
    # tau lies in [s[j], s[j-1]): items 0..j-1 are certain, s[j:] is the tail.
    t_sum, t_sq = float(tail_sum[j]), float(tail_sq[j])
    if t_sum <= 0.0:
        return max(k_min, min(k_max, j))
    tau = (allowed + t_sq) / t_sum
    if j > 0:
        tau = min(tau, float(s[j - 1]))
    k = j + t_sum / tau
    return max(k_min, min(k_max, math.ceil(k)))


def expected_rel_variance(weights: torch.Tensor, k: int) -> float:
    """Variance / ||w||^2 of threshold sampling with expected count k (the inverse of `budget`, for checks)."""
    w = weights.detach().flatten().double()
    if k >= w.numel() or float((w * w).sum()) == 0.0:
        return 0.0
    lo, hi = 0.0, float(w.sum())  # tau = sum(w) keeps < 1 item in expectation
    for _ in range(100):
        tau = 0.5 * (lo + hi)
        if float(torch.clamp(w / tau, max=1.0).sum()) > k:
            lo = tau
        else:
            hi = tau
    tau = hi
    small = w[w < tau]
    return float((small * (tau - small)).sum()) / float((w * w).sum())
