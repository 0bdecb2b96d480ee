"""Settings of the manufacturing factory template.

One frozen model, grouped under the root settings object (blacksoil.config.Settings.manufacturing).
"""

from __future__ import annotations

from pydantic import field_validator

from blacksoil.configbase import ComponentConfig


class ManufacturingConfig(ComponentConfig):
    """Settings of the manufacturing template: RUL model and job-shop solver.

    The plant's size is part of each task's initial state (seed and overrides), not a setting, so that a task means
    the same thing on every installation; so are the robots' battery costs (plant.BATTERY_PER_HOP).
    """

    rul_cap: int = 125
    """Piecewise-linear cap on the remaining-useful-life training target (cycles)."""
    rul_window: int = 30
    """Rolling window for the RUL features (cycles)."""
    rul_trees: int = 150
    """Boosting iterations of the RUL gradient-boosting model (count)."""
    jobshop_time_limit_s: float = 10.0
    """Default wall-clock limit of one CP-SAT job-shop solve (seconds)."""
    jobshop_workers: int = 2
    """CP-SAT search workers (threads); keep at or below the cores the scheduler grants."""

    @field_validator("rul_cap", "rul_window", "rul_trees", "jobshop_workers")
    @classmethod
    def _positive(cls, v: int) -> int:
        if v < 1:
            raise ValueError(f"{v} must be a positive integer")
        return v

    @field_validator("jobshop_time_limit_s")
    @classmethod
    def _positive_time(cls, v: float) -> float:
        if v <= 0:
            raise ValueError(f"jobshop_time_limit_s={v} must be > 0 seconds")
        return v
