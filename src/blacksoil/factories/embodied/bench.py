"""Measurements of the embodied suite: physics time per tool call, and the oracle's plan replayed on a perturbed start.

`python -m blacksoil.factories.embodied.bench [--no-replay]` prints them as JSON (docs/benchmarks.md records a run).
"""

from __future__ import annotations

import json
import statistics
import time
from typing import Any

from blacksoil.agentscore.agents import ToolBox, Trajectory, _resolve_refs
from blacksoil.agentscore.checkers import check
from blacksoil.agentscore.tasks import Initial, Task, list_tasks

from .env import EmbodiedEnv


def replay(task: Task, perturb: int | None = None) -> tuple[bool, list[str]]:
    """Run the task's oracle calls open-loop (errors do not stop it) on its start, or on a perturbed one.

    Returns (passed, failure details). A plan that only names parts and places is closed-loop and survives a shifted
    start; one that bakes in what it saw (colours, sizes, defects, positions, timing) must fail.
    """
    ov = dict(task.initial.overrides)
    if perturb is not None:
        ov["perturb"] = perturb
    env = EmbodiedEnv(task.initial.seed, ov)
    traj = Trajectory()
    box = ToolBox(env, task.tools, traj)
    results: list[Any] = []
    for step in task.oracle:
        if step.tool is not None:
            result, _ = box.call(step.tool, _resolve_refs(step.args, results))
            results.append(result)
    verdict = check(task.model_copy(update={"initial": Initial(seed=task.initial.seed, overrides=ov)}),
                    env.snapshot(), "Done.")
    return verdict.passed, [c.detail for c in verdict.checks if not c.passed]


def physics_per_call(tasks: list[Task]) -> dict[str, Any]:
    """Wall seconds per tool call and per simulated second while replaying the oracle plans (physics + tools)."""
    per_call: list[float] = []
    sim_s = wall_s = cpu_s = 0.0
    for task in tasks:
        env = EmbodiedEnv(task.initial.seed, dict(task.initial.overrides))
        traj = Trajectory()
        box = ToolBox(env, task.tools, traj)
        t0, c0 = time.perf_counter(), time.process_time()
        for step in task.oracle:
            if step.tool is not None:
                box.call(step.tool, dict(step.args))
        wall_s += time.perf_counter() - t0
        cpu_s += time.process_time() - c0
        sim_s += env.world.time
        per_call += [s.latency_s for s in traj.steps if s.kind == "tool"]
    return {"tasks": len(tasks), "tool_calls": len(per_call),
            "per_call_mean_s": round(statistics.fmean(per_call), 4),
            "per_call_p95_s": round(sorted(per_call)[int(0.95 * (len(per_call) - 1))], 4),
            "per_call_max_s": round(max(per_call), 4), "cpu_per_call_mean_s": round(cpu_s / len(per_call), 4),
            "sim_s": round(sim_s, 1), "realtime_factor": round(sim_s / wall_s, 1)}


def physics_steps(n: int = 1000) -> dict[str, Any]:
    """Wall and CPU seconds of n bare physics steps of a cell with four parts (no tools, no logging)."""
    import mujoco

    parts = [{"id": f"P{k}", "colour": "red", "size": "medium", "x": 1.42, "y": 0.40 + 0.12 * k} for k in range(4)]
    env = EmbodiedEnv(0, {"parts": parts})
    m, d = env.world.model, env.world.data
    t0, c0 = time.perf_counter(), time.process_time()
    mujoco.mj_step(m, d, nstep=n)
    return {"steps": n, "wall_ms": round((time.perf_counter() - t0) * 1000, 1),
            "cpu_ms": round((time.process_time() - c0) * 1000, 1)}


def main() -> None:
    """Print the physics-step and per-call benches and (unless --no-replay) the perturbed-replay table."""
    import sys

    tasks = list_tasks("embodied")
    print(json.dumps(physics_steps()))
    print(json.dumps(physics_per_call(tasks)))
    if "--no-replay" in sys.argv:
        return
    rows: dict[str, list[int]] = {}
    for task in tasks:
        passed, _ = replay(task, perturb=1)
        row = rows.setdefault(task.category, [0, 0])
        row[0] += passed
        row[1] += 1
    print(json.dumps({c: f"{p}/{n} still pass" for c, (p, n) in rows.items()}))


if __name__ == "__main__":
    main()
