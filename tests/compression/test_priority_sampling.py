"""Statistical checks of the priority-sampling estimators: unbiased (and top-k is not), variance, budget.

Every check uses a fixed seed and a bound derived from the estimator's own variance, not a loose tolerance.
"""

from __future__ import annotations

import math

import pytest
import torch

from blacksoil.compression import priority
from blacksoil.compression.config import CompressionConfig
from blacksoil.errors import ConfigError

N, K, DRAWS = 64, 8, 40_000
# Under unbiasedness the sum over coordinates of z_i^2 is ~chi^2 with N degrees of freedom
# (mean N, sd sqrt(2N)); 5 sd above the mean is exceeded with probability < 1e-5.
CHI2_BOUND = N + 5 * math.sqrt(2 * N)


def heavy_tailed(n: int, seed: int) -> torch.Tensor:
    """Cubed normals, kept away from 0 so every coordinate is drawn often enough in DRAWS tries."""
    z = torch.randn(n, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    return torch.sign(z) * (0.3 + z.abs()) ** 3


def chi2_of_mean(estimates: torch.Tensor, truth: torch.Tensor) -> float:
    """sum_i ((mean_i - truth_i) / standard error_i)^2; inf when a zero-variance coordinate is off."""
    mean, var = estimates.mean(0), estimates.var(0)
    err = mean - truth
    se2 = var / estimates.shape[0]
    exact = (se2 == 0) & (err.abs() <= 1e-12 * truth.abs().clamp(min=1.0))
    z2 = torch.where(exact, torch.zeros_like(err), err * err / se2)
    return float(z2.sum())


def noisy_gradients(x: torch.Tensor, seed: int) -> torch.Tensor:
    """DRAWS stochastic gradients with mean x (minibatch-like noise of 30% of x's rms)."""
    g = torch.Generator().manual_seed(seed)
    return x + 0.3 * x.pow(2).mean().sqrt() * torch.randn(DRAWS, x.numel(), generator=g, dtype=x.dtype)


def priority_estimates(g: torch.Tensor, seed: int) -> torch.Tensor:
    s = priority.draw(g.abs(), K, torch.Generator().manual_seed(seed))
    return priority.densify(g.shape[-1], s, priority.estimate_values(g, s))


def topk_estimates(g: torch.Tensor) -> torch.Tensor:
    idx = torch.topk(g.abs(), K, dim=-1).indices
    return torch.zeros_like(g).scatter_(-1, idx, torch.gather(g, -1, idx))


def test_priority_sampling_is_unbiased_and_topk_is_not() -> None:
    x = heavy_tailed(N, 1)
    g = noisy_gradients(x, 2)
    assert chi2_of_mean(priority_estimates(g, 3), x) < CHI2_BOUND
    # The same test, the same budget k: top-k fails it by orders of magnitude.
    assert chi2_of_mean(topk_estimates(g), x) > 100 * CHI2_BOUND


def test_priority_sampling_unbiased_for_a_fixed_vector() -> None:
    x = heavy_tailed(N, 4)
    est = priority_estimates(x.expand(DRAWS, N), 5)
    assert chi2_of_mean(est, x) < CHI2_BOUND
    assert chi2_of_mean(topk_estimates(x.expand(DRAWS, N)), x) == math.inf


def test_shared_index_importance_weighting_is_unbiased() -> None:
    """Scheme (b): indices drawn from weights that are NOT |x| (a stale proxy); x * max(1, tau/w) stays unbiased."""
    x = heavy_tailed(N, 6)
    proxy = (x.abs() + 0.5 * torch.rand(N, generator=torch.Generator().manual_seed(7), dtype=x.dtype)).flip(0)
    w = proxy.expand(DRAWS, N)
    s = priority.draw(w, K, torch.Generator().manual_seed(8))
    est = priority.densify(N, s, torch.gather(x.expand(DRAWS, N), -1, s.indices) * priority.importance_scale(w, s))
    assert chi2_of_mean(est, x) < CHI2_BOUND
    # Without the importance weights the same draw is biased.
    plain = priority.densify(N, s, torch.gather(x.expand(DRAWS, N), -1, s.indices))
    assert chi2_of_mean(plain, x) > 100 * CHI2_BOUND


def test_variance_estimate_matches_the_empirical_variance() -> None:
    x = heavy_tailed(N, 9)
    w = x.abs().expand(DRAWS, N)
    s = priority.draw(w, K, torch.Generator().manual_seed(10))
    est = priority.densify(N, s, priority.estimate_values(x.expand(DRAWS, N), s))
    v_hat = priority.variance_estimate(w, s)
    empirical = float(est.var(0).sum())
    # Standard error of the mean of v_hat; the empirical variance's own error is of the same order.
    se = float(v_hat.std()) / math.sqrt(DRAWS)
    assert abs(float(v_hat.mean()) - empirical) < 5 * se + 0.02 * empirical


def test_budget_is_the_smallest_k_meeting_the_target() -> None:
    w = heavy_tailed(5000, 11).abs()
    for target in (0.1, 0.5, 2.0, 6.0):
        k = priority.budget(w, target, 1, 5000)
        assert priority.expected_rel_variance(w, k) <= target * (1 + 1e-6)
        assert priority.expected_rel_variance(w, k - 2) > target
    ks = [priority.budget(w, t, 1, 5000) for t in (0.1, 0.5, 2.0, 6.0)]
    assert ks == sorted(ks, reverse=True) and ks[0] > ks[-1]
    assert priority.budget(w, 0.5, 10, 20) == 20
    assert priority.budget(torch.zeros(100), 0.5, 3, 50) == 3
    assert priority.budget(torch.full((100,), float("inf")), 0.5, 3, 50) == 50


def test_draw_keeps_everything_when_k_covers_the_vector() -> None:
    x = torch.tensor([3.0, -1.0, 0.5])
    s = priority.draw(x.abs(), 5)
    assert torch.equal(priority.densify(3, s, priority.estimate_values(x, s)), x)


@pytest.mark.parametrize(
    ("field", "value", "needle"),
    [
        ("target_rel_variance", 0.0, "target_rel_variance=0.0"),
        ("max_density", 1.5, "max_density=1.5"),
        ("floor_frac", 0.0, "floor_frac=0.0"),
        ("ema_beta", 1.0, "ema_beta=1.0"),
        ("warmup_steps", -1, "warmup_steps=-1"),
    ],
)
def test_bad_settings_name_the_value(field: str, value: object, needle: str) -> None:
    with pytest.raises(ConfigError, match=needle.replace(".", r"\.")):
        CompressionConfig(**{field: value})


def test_error_feedback_needs_a_contractive_budget() -> None:
    with pytest.raises(ConfigError, match="error_feedback"):
        CompressionConfig(error_feedback=True, target_rel_variance=2.0)
    assert CompressionConfig(error_feedback=True, target_rel_variance=0.5).error_feedback
