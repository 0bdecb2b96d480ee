"""Settings of the compression pillar.

One frozen model, grouped under the root settings object (blacksoil.config.Settings.compression).
"""

from __future__ import annotations

from typing import Literal

from pydantic import model_validator

from blacksoil.configbase import ComponentConfig
from blacksoil.errors import ConfigError

__all__ = ["CompressionConfig"]


class CompressionConfig(ComponentConfig):
    """Settings of the priority-sampling DDP communication hook."""

    enabled: bool = True
    """Compress gradients at all (False: the hook is a plain averaging allreduce, bit-identical to DDP's)."""
    scheme: Literal["shared", "allgather"] = "shared"
    """Communication scheme: `shared` = shared indices + one allreduce of k values; `allgather` = (index, value)."""
    target_rel_variance: float = 2.0
    """Per-bucket budget: k is the smallest with estimator variance <= this fraction of ||g||^2 (unitless)."""
    min_density: float = 0.001
    """Lower bound of k as a fraction of the bucket's elements (unitless, 0..1)."""
    max_density: float = 0.16
    """Upper bound of k as a fraction of the bucket's elements (unitless, 0..1)."""
    warmup_steps: int = 1
    """Optimizer steps at the start that are averaged exactly, uncompressed (steps)."""
    min_compress_numel: int = 4096
    """Buckets with fewer elements than this are averaged exactly (elements)."""
    error_feedback: bool = False
    """Carry each rank's compression error into its next step (classic EF; stable only for target < 1)."""
    ema_beta: float = 0.5
    """`shared` scheme: decay of the running average of |averaged gradient| that sets shared weights (unitless)."""
    floor_frac: float = 0.2
    """`shared` scheme: shared weights are floored at this fraction of their mean, so every index can be drawn."""
    sketch_block: int = 0
    """`shared` scheme: if > 1, first allreduce one |g| sum per block of this many elements to refresh the weights."""
    value_dtype: Literal["float32", "float16"] = "float16"
    """Dtype of the values put on the wire (float16 halves value bytes; indices are always int32)."""
    seed: int = 0
    """Seed of the sampling; all ranks must use the same one for the `shared` scheme."""

    @model_validator(mode="after")
    def _check(self) -> CompressionConfig:
        if not 0.0 < self.target_rel_variance <= 100.0:
            raise ConfigError(
                f"compression.target_rel_variance={self.target_rel_variance} is out of range; use a value in (0, 100]"
            )
        for name in ("min_density", "max_density"):
            v = getattr(self, name)
            if not 0.0 < v <= 1.0:
                raise ConfigError(f"compression.{name}={v} is out of range; use a fraction in (0, 1]")
        if self.min_density > self.max_density:
            raise ConfigError(
                f"compression.min_density={self.min_density} exceeds max_density={self.max_density}; "
                "set min_density <= max_density"
            )
        if self.warmup_steps < 0 or self.min_compress_numel < 0:
            raise ConfigError(
                f"compression.warmup_steps={self.warmup_steps} / min_compress_numel={self.min_compress_numel} "
                "must be >= 0"
            )
        if self.sketch_block < 0:
            raise ConfigError(f"compression.sketch_block={self.sketch_block} must be >= 0 (0 or 1 = no sketch)")
        if not 0.0 <= self.ema_beta < 1.0:
            raise ConfigError(f"compression.ema_beta={self.ema_beta} is out of range; use a value in [0, 1)")
        if not 0.0 < self.floor_frac <= 1.0:
            raise ConfigError(
                f"compression.floor_frac={self.floor_frac} is out of range; use a value in (0, 1] "
                "(0 would make some indices impossible to draw and the estimate biased)"
            )
        if self.error_feedback and self.target_rel_variance >= 1.0:
            raise ConfigError(
                f"compression.error_feedback=true needs target_rel_variance < 1 (got {self.target_rel_variance}): "
                "classic error feedback only converges for a contractive compressor; lower the target or turn "
                "error_feedback off (the priority-sampling estimate is unbiased without it)"
            )
        return self
