"""What a factory environment takes from the root settings, resolved once by a composition root and passed in.

Environments are built from a task's initial state (AgentScore), a tool set's per-run state (the agent runtime) or a
fixed world (the red-team suites). The few settings they need beyond that state travel in one `EnvSettings`, so no
builder reads the process-wide settings and two runs in one process can use different ones.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from blacksoil.factories.manufacturing.config import ManufacturingConfig

__all__ = ["EnvSettings"]


class _RootSettings(Protocol):
    """The sections of the root settings an environment reads (blacksoil.config.Settings has them).

    A Protocol, not an import of config.Settings: the factories sit below the composition root.
    """

    @property
    def home(self) -> Path: ...

    @property
    def manufacturing(self) -> ManufacturingConfig: ...


@dataclass(frozen=True)
class EnvSettings:
    """The environments' inputs from outside their state (one per run or CLI call, never a process-wide global)."""

    home: Path
    """Home folder: where the plant's RUL model is trained once and cached."""
    manufacturing: ManufacturingConfig = field(default_factory=ManufacturingConfig)
    """The plant's RUL model and the job-shop solver's workers."""

    @classmethod
    def from_settings(cls, s: _RootSettings) -> EnvSettings:
        """The environment settings of the root settings `s` (the CLI's or the composition root's)."""
        return cls(s.home, s.manufacturing)
