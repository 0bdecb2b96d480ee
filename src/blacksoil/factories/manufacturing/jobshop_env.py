"""The job-shop-quality environment: one instance, tools to inspect, solve, dispatch and submit a schedule.

The checker scores the submitted schedule as makespan ÷ best known (feasibility is checked on submit).
"""

from __future__ import annotations

from typing import Any, Literal

from blacksoil.errors import ConfigError, UserError
from blacksoil.factories.manufacturing.config import ManufacturingConfig
from blacksoil.factories.toolspec import ToolSpec, bind

from . import jobshop

__all__ = ["JobshopEnv", "dispatch_schedule", "get_instance", "solve_schedule", "submit_schedule"]


class JobshopEnv:
    """State: the instance (with its best known makespan) and the last feasible submitted schedule."""

    system_prompt = ("You plan a job shop. Each job's operations run in order, each on one machine for a fixed "
                     "duration; a machine runs one operation at a time. Submit a feasible schedule with a small "
                     "makespan using submit_schedule.")

    def __init__(self, seed: int = 0, overrides: dict[str, Any] | None = None, *,
                 config: ManufacturingConfig) -> None:
        """`config`: the solver's settings (job-shop workers)."""
        self.config = config
        spec = (overrides or {}).get("instance")
        if isinstance(spec, str):
            self.instance = jobshop.classic(spec)
        elif isinstance(spec, dict):
            try:
                self.instance = jobshop.Instance(spec["name"], spec["durations"], spec["machines"],
                                                 int(spec["best_known"]))
            except (KeyError, TypeError, ValueError) as e:
                raise ConfigError(f"overrides.instance needs name, durations, machines, best_known ({e})") from None
        else:
            raise ConfigError("overrides.instance must name a shipped instance (e.g. ft06) or give its matrices")
        self.submitted: dict[str, Any] | None = None
        self.attempts = 0

    def snapshot(self) -> dict[str, Any]:
        """The state checkers read."""
        return {"instance": {"name": self.instance.name, "best_known": self.instance.best_known},
                "submitted": dict(self.submitted) if self.submitted else None, "attempts": self.attempts}

    def tools(self) -> list[ToolSpec]:
        """The four job-shop tools bound to this environment."""
        return [bind(fn, self) for fn in (get_instance, solve_schedule, dispatch_schedule, submit_schedule)]


def get_instance(env: JobshopEnv) -> dict[str, Any]:
    """The job-shop instance: jobs with their operations (machine, duration) in order."""
    return env.instance.to_dict()


def solve_schedule(env: JobshopEnv, time_limit_s: float = 2.0) -> dict[str, Any]:
    """Compute a low-makespan schedule with the OR-Tools CP-SAT solver; returns starts[job][op] and the makespan.

    Args:
        time_limit_s: solver time limit in seconds (0.1..30)
    """
    if not 0.1 <= time_limit_s <= 30:
        raise UserError(f"time_limit_s={time_limit_s} must be between 0.1 and 30 seconds")
    s = jobshop.solve(env.instance, time_limit_s, env.config.jobshop_workers)
    return {"starts": s.starts, "makespan": s.makespan, "status": s.status}


def dispatch_schedule(env: JobshopEnv, rule: Literal["SPT", "LPT", "MWKR", "FIFO"]) -> dict[str, Any]:
    """Build a quick schedule with a dispatching rule (SPT, LPT, MWKR = most work remaining, FIFO).

    Args:
        rule: SPT, LPT, MWKR or FIFO
    """
    s = jobshop.dispatch(env.instance, rule)
    return {"starts": s.starts, "makespan": s.makespan, "rule": rule}


def submit_schedule(env: JobshopEnv, starts: list[list[int]]) -> dict[str, Any]:
    """Submit a schedule: starts[job][op] start times; it is checked for feasibility and its makespan recorded.

    Args:
        starts: one list per job with the start time of each of its operations
    """
    env.attempts += 1
    makespan = jobshop.validate(env.instance, starts)
    env.submitted = {"makespan": makespan, "starts": starts}
    return {"accepted": True, "makespan": makespan}
