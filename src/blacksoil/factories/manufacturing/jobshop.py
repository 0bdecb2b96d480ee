"""Job-shop scheduling: OR-Tools CP-SAT with a time limit, dispatching rules, feasibility checks.

Instances are (durations, machines) matrices, one row per job, one column per operation in order.
"""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from typing import Any

from blacksoil.errors import NotFoundError, UserError


@dataclass(frozen=True)
class Instance:
    """A job-shop instance: job j's operation o runs on machines[j][o] for durations[j][o]."""

    name: str
    durations: list[list[int]]
    machines: list[list[int]]
    best_known: int | None = None
    lower_bound: int | None = None

    @property
    def n_machines(self) -> int:
        return 1 + max(m for row in self.machines for m in row)

    def to_dict(self) -> dict[str, Any]:
        """Compact JSON form, as the agent tools show it (small models have 2k-token context slots)."""
        jobs = [[[m, d] for m, d in zip(ms, ds, strict=True)] for ms, ds in zip(self.machines, self.durations,
                                                                                strict=True)]
        return {"name": self.name, "machines": self.n_machines, "jobs": jobs,
                "format": "jobs[j][o] = [machine, duration] of operation o of job j, in order"}


@dataclass
class Schedule:
    """Start time of every operation (starts[j][o]), its makespan and how the solver ended."""

    starts: list[list[int]]
    makespan: int
    status: str = "feasible"
    wall_s: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)


@lru_cache(maxsize=1)
def _classic() -> dict[str, Any]:
    path = resources.files("blacksoil.factories.manufacturing") / "data" / "jobshop_instances.json"
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def classic_names() -> list[str]:
    """Names of the classic instances shipped with the package."""
    return sorted(_classic())


def classic(name: str) -> Instance:
    """A shipped classic instance (ft06, ft10, la01 …, ta01) with its best known makespan."""
    data = _classic().get(name)
    if data is None:
        raise NotFoundError(f"job-shop instance {name!r} is not shipped; use one of {', '.join(classic_names())}")
    meta = data["metadata"]
    best = meta.get("optimum") or meta.get("upper_bound")
    return Instance(name, data["duration_matrix"], data["machines_matrix"], best, meta.get("lower_bound"))


def validate(inst: Instance, starts: Any) -> int:
    """Check a schedule is feasible (shape, precedence, no machine overlap); return its makespan."""
    if not isinstance(starts, list) or len(starts) != len(inst.durations):
        raise UserError(f"starts must be a list with one row per job ({len(inst.durations)} rows); got {starts!r:.80}")
    intervals: dict[int, list[tuple[int, int, int, int]]] = {}
    end = 0
    for j, (row, durs, machs) in enumerate(zip(starts, inst.durations, inst.machines, strict=True)):
        if not isinstance(row, list) or len(row) != len(durs) or not all(isinstance(s, int) and s >= 0 for s in row):
            raise UserError(f"starts[{j}] must be {len(durs)} non-negative integers, one per operation; "
                            f"got {row!r:.80}")
        for o in range(1, len(row)):
            if row[o] < row[o - 1] + durs[o - 1]:
                raise UserError(
                    f"starts[{j}][{o}]={row[o]} begins before operation {o - 1} of job {j} ends "
                    f"({row[o - 1] + durs[o - 1]}); operations of a job run in order"
                )
        for o, (s, d, m) in enumerate(zip(row, durs, machs, strict=True)):
            intervals.setdefault(m, []).append((s, s + d, j, o))
            end = max(end, s + d)
    for m, ivs in intervals.items():
        ivs.sort()
        for a, b in itertools.pairwise(ivs):
            if b[0] < a[1]:
                raise UserError(
                    f"machine {m} runs job {a[2]} op {a[3]} and job {b[2]} op {b[3]} at the same time "
                    f"(starts {a[0]} and {b[0]}); move one of them"
                )
    return end


def solve(inst: Instance, time_limit_s: float, workers: int = 2, seed: int = 0) -> Schedule:
    """Minimize makespan with CP-SAT (interval variables, no-overlap per machine) within the time limit."""
    from ortools.sat.python import cp_model

    if time_limit_s <= 0:
        raise UserError(f"time_limit_s={time_limit_s} must be > 0 seconds")
    model = cp_model.CpModel()
    horizon = sum(sum(r) for r in inst.durations)
    starts: list[list[Any]] = []
    per_machine: dict[int, list[Any]] = {}
    ends = []
    for j, (durs, machs) in enumerate(zip(inst.durations, inst.machines, strict=True)):
        row: list[Any] = []
        prev_end: Any = None
        for o, (d, m) in enumerate(zip(durs, machs, strict=True)):
            s = model.new_int_var(0, horizon, f"s{j}_{o}")
            e = model.new_int_var(0, horizon, f"e{j}_{o}")
            per_machine.setdefault(m, []).append(model.new_interval_var(s, d, e, f"i{j}_{o}"))
            if prev_end is not None:
                model.add(s >= prev_end)
            prev_end = e
            row.append(s)
        ends.append(prev_end)
        starts.append(row)
    for ivs in per_machine.values():
        model.add_no_overlap(ivs)
    makespan = model.new_int_var(0, horizon, "makespan")
    model.add_max_equality(makespan, ends)
    model.minimize(makespan)
    solver = cp_model.CpSolver()
    solver.parameters.max_time_in_seconds = float(time_limit_s)
    solver.parameters.num_workers = max(1, int(workers))
    solver.parameters.random_seed = seed
    # CP-SAT's own SIGINT handler stays installed after the solve: Ctrl-C then killed `blacksoil up` (exit 130)
    # instead of reaching its clean shutdown.
    solver.parameters.catch_sigint_signal = False
    status = solver.solve(model)
    if status not in (cp_model.OPTIMAL, cp_model.FEASIBLE):
        raise UserError(f"no schedule found for {inst.name} within {time_limit_s} s; raise time_limit_s")
    out = [[int(solver.value(s)) for s in row] for row in starts]
    return Schedule(out, int(solver.value(makespan)), "optimal" if status == cp_model.OPTIMAL else "feasible",
                    solver.wall_time, {"lower_bound": int(solver.best_objective_bound)})


RULES = ("SPT", "LPT", "MWKR", "FIFO")


def dispatch(inst: Instance, rule: str) -> Schedule:
    """A non-delay schedule built by a dispatching rule (SPT, LPT, MWKR = most work remaining, FIFO)."""
    if rule not in RULES:
        raise UserError(f"rule={rule!r} is unknown; use one of {', '.join(RULES)}")
    n = len(inst.durations)
    nxt = [0] * n
    job_ready = [0] * n
    mach_ready: dict[int, int] = {}
    starts = [[0] * len(r) for r in inst.durations]
    remaining = [sum(r) for r in inst.durations]
    while any(nxt[j] < len(inst.durations[j]) for j in range(n)):
        cands = [j for j in range(n) if nxt[j] < len(inst.durations[j])]
        est = {j: max(job_ready[j], mach_ready.get(inst.machines[j][nxt[j]], 0)) for j in cands}
        t = min(est.values())
        ready = [j for j in cands if est[j] == t]
        key = {
            "SPT": lambda j: (inst.durations[j][nxt[j]], j),
            "LPT": lambda j: (-inst.durations[j][nxt[j]], j),
            "MWKR": lambda j: (-remaining[j], j),
            "FIFO": lambda j: (job_ready[j], j),
        }[rule]
        j = min(ready, key=key)
        o = nxt[j]
        d, m = inst.durations[j][o], inst.machines[j][o]
        starts[j][o] = t
        job_ready[j] = mach_ready[m] = t + d
        remaining[j] -= d
        nxt[j] += 1
    return Schedule(starts, validate(inst, starts), f"dispatch:{rule}")
