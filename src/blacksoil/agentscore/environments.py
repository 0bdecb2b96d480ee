"""Environments AgentScore runs tasks in: one per domain, built fresh from a task's initial state.

An environment gives tools (ToolSpecs), a system prompt and a JSON snapshot of its state for the checkers.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from blacksoil.errors import NotFoundError
from blacksoil.factories.toolspec import ToolSpec

from .tasks import Initial, Task


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

    def __init__(self, seed: int = 0, overrides: dict[str, Any] | None = None) -> None:
        from blacksoil.factories.manufacturing.plant import Plant

        self.plant = Plant.create(seed, overrides)

    def tools(self) -> list[ToolSpec]:
        """The plant operator's tools."""
        from blacksoil.factories.manufacturing.tools import tools

        return tools(self.plant)

    def snapshot(self) -> dict[str, Any]:
        """The plant state."""
        return self.plant.snapshot()


def _jobshop(seed: int, overrides: dict[str, Any]) -> Environment:
    from blacksoil.factories.manufacturing.jobshop_env import JobshopEnv

    return JobshopEnv(seed, overrides)


def _toolbox(seed: int, overrides: dict[str, Any]) -> Environment:
    from .toolbox import Workspace

    return Workspace(seed, overrides)


def _general(seed: int, overrides: dict[str, Any]) -> Environment:
    from .general_tools import GeneralWorkspace

    return GeneralWorkspace(seed, overrides)


def _embodied(seed: int, overrides: dict[str, Any]) -> Environment:
    from blacksoil.factories.embodied.env import EmbodiedEnv

    return EmbodiedEnv(seed, overrides)


def _healthcare(seed: int, overrides: dict[str, Any]) -> Environment:
    from blacksoil.factories.healthcare.env import HealthcareEnv

    return HealthcareEnv(seed, overrides)


DOMAINS: dict[str, Callable[[int, dict[str, Any]], Environment]] = {
    "manufacturing": ManufacturingEnv,
    "jobshop": _jobshop,
    "tools-basic": _toolbox,
    "tools-general": _general,
    "embodied": _embodied,
    "healthcare": _healthcare,
}


def make_env(domain: str, initial: Initial) -> Environment:
    """A fresh environment for a domain and an initial state."""
    if domain not in DOMAINS:
        raise NotFoundError(f"domain {domain!r} does not exist; use one of {', '.join(DOMAINS)}")
    return DOMAINS[domain](initial.seed, dict(initial.overrides))


def env_for(task: Task) -> Environment:
    """A fresh environment in the task's initial state."""
    return make_env(task.domain, task.initial)
