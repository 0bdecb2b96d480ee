"""Environments AgentScore runs tasks in: one per domain, built fresh from a task's initial state.

An environment gives tools (ToolSpecs), a system prompt and a JSON snapshot of its state for the checkers.
What an environment needs from outside the task (the RUL model's home, the manufacturing settings) comes in an
`EnvSettings` (factories/env_settings.py) the composition root builds once; no builder reads the global settings.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from blacksoil.errors import NotFoundError
from blacksoil.factories.env_settings import EnvSettings
from blacksoil.factories.toolspec import ToolSpec

from .tasks import Initial, Task

__all__ = ["DOMAINS", "EnvSettings", "Environment", "ManufacturingEnv", "env_for", "make_env"]


class Environment(Protocol):
    """What a domain provides to the runner and the checkers."""

    system_prompt: str

    def tools(self) -> list[ToolSpec]:
        """All tools of the domain, bound to this environment."""
        ...

    def snapshot(self) -> dict[str, Any]:
        """A JSON-able copy of the state."""
        ...


class ManufacturingEnv:
    """The simulated plant behind the manufacturing suite."""

    system_prompt = ("You are the operator assistant of a factory. Use the tools to inspect machines, sensors, "
                     "jobs, orders and robots and to act on them. Answer briefly with the facts asked for.")

    def __init__(self, seed: int, overrides: dict[str, Any] | None, settings: EnvSettings) -> None:
        from blacksoil.factories.manufacturing.plant import Plant

        self.plant = Plant.create(seed, overrides, home=settings.home, config=settings.manufacturing)

    def tools(self) -> list[ToolSpec]:
        """The plant operator's tools."""
        from blacksoil.factories.manufacturing.tools import tools

        return tools(self.plant)

    def snapshot(self) -> dict[str, Any]:
        """The plant state."""
        return self.plant.snapshot()


def _jobshop(seed: int, overrides: dict[str, Any], settings: EnvSettings) -> Environment:
    from blacksoil.factories.manufacturing.jobshop_env import JobshopEnv

    return JobshopEnv(seed, overrides, config=settings.manufacturing)


def _toolbox(seed: int, overrides: dict[str, Any], settings: EnvSettings) -> Environment:
    from .toolbox import Workspace

    return Workspace(seed, overrides)


def _general(seed: int, overrides: dict[str, Any], settings: EnvSettings) -> Environment:
    from .general_tools import GeneralWorkspace

    return GeneralWorkspace(seed, overrides)


def _embodied(seed: int, overrides: dict[str, Any], settings: EnvSettings) -> Environment:
    from blacksoil.factories.embodied.env import EmbodiedEnv

    return EmbodiedEnv(seed, overrides)


def _healthcare(seed: int, overrides: dict[str, Any], settings: EnvSettings) -> Environment:
    from blacksoil.factories.healthcare.env import HealthcareEnv

    return HealthcareEnv(seed, overrides)


# Every builder takes the settings, even those that need none today, so a domain can start using them without
# a signature change at every caller.
DOMAINS: dict[str, Callable[[int, dict[str, Any], EnvSettings], Environment]] = {
    "manufacturing": ManufacturingEnv,
    "jobshop": _jobshop,
    "tools-basic": _toolbox,
    "tools-general": _general,
    "embodied": _embodied,
    "healthcare": _healthcare,
}


def make_env(domain: str, initial: Initial, settings: EnvSettings) -> Environment:
    """A fresh environment for a domain and an initial state."""
    if domain not in DOMAINS:
        raise NotFoundError(f"domain {domain!r} does not exist; use one of {', '.join(DOMAINS)}")
    return DOMAINS[domain](initial.seed, dict(initial.overrides), settings)


def env_for(task: Task, settings: EnvSettings) -> Environment:
    """A fresh environment in the task's initial state."""
    return make_env(task.domain, task.initial, settings)
