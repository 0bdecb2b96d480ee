"""Settings of the manufacturing factory template.

One frozen model, grouped under the root settings object (blacksoil.config.Settings.manufacturing).
"""

from __future__ import annotations

from pydantic import PositiveFloat, PositiveInt

from blacksoil.configbase import ComponentConfig

__all__ = ["ManufacturingConfig"]


class ManufacturingConfig(ComponentConfig):
    """Settings of the manufacturing template: RUL model and job-shop solver.

    The plant's size is part of each task's initial state (seed and overrides), not a setting, so that a task means
    the same thing on every installation; so are the robots' battery costs (plant.BATTERY_PER_HOP).
    """

    rul_cap: PositiveInt = 125
    """Piecewise-linear cap on the remaining-useful-life training target (cycles)."""
    rul_window: PositiveInt = 30
    """Rolling window for the RUL features (cycles)."""
    rul_trees: PositiveInt = 150
    """Boosting iterations of the RUL gradient-boosting model (count)."""
    jobshop_time_limit_s: PositiveFloat = 10.0
    """Default wall-clock limit of one CP-SAT job-shop solve (seconds)."""
    jobshop_workers: PositiveInt = 2
    """CP-SAT search workers (threads); keep at or below the cores the scheduler grants."""

