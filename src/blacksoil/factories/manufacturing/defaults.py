"""Transitional: the process's manufacturing settings, for plants and job shops built where none are passed in.

AgentScore builds environments from a task's initial state only (`agentscore/environments.py`: `Plant.create(seed,
overrides)`, `JobshopEnv(seed, overrides)`), and the agent runtime's plant tool set likewise, so no settings reach
them yet. Everything else in this package takes the home folder and `ManufacturingConfig` as arguments; once those
builders pass them (issue 14), this module goes away.
"""

from __future__ import annotations

from pathlib import Path

from blacksoil.factories.manufacturing.config import ManufacturingConfig


def process_settings() -> tuple[Path, ManufacturingConfig]:
    """(home, manufacturing settings) of this process."""
    from blacksoil.config import settings

    s = settings()
    return s.home, s.manufacturing
