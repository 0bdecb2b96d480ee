"""Measure `blacksoil agent run` on manufacturing tasks: the default model through the gateway, N tries.

Each try is a fresh run (fresh plant) on a maintenance task; a deterministic checker reads the plant afterwards.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from blacksoil.agents.launcher import RuntimeSetup
from blacksoil.agents.spec import load_team
from blacksoil.contracts import ExperienceSink

KINDS = ("inspection", "repair", "replacement")
PRIORITIES = ("low", "medium", "high")


def tasks(n: int, machines: int = 8) -> list[dict[str, str]]:
    """`n` maintenance tasks, varied over machine, kind and priority (deterministic)."""
    out = []
    for i in range(n):
        m, k, p = f"M{i % machines + 1}", KINDS[i % len(KINDS)], PRIORITIES[(i // len(KINDS)) % len(PRIORITIES)]
        out.append({"machine_id": m, "kind": k, "priority": p,
                    "task": f"Open a {p} priority {k} maintenance order for machine {m}."})  # fmt: skip
    return out


def check(plant_file: Path, want: dict[str, str]) -> bool:
    """The plant holds an open maintenance order with exactly the machine, kind and priority asked for."""
    if not plant_file.exists():
        return False
    orders = json.loads(plant_file.read_text())["maintenance_orders"].values()
    return any(
        o["machine_id"] == want["machine_id"] and o["kind"] == want["kind"] and o["priority"] == want["priority"]
        for o in orders
    )


def run_bench(spec: Path, tries: int, setup: RuntimeSetup, base_url: str | None = None,
              new_sink: Callable[[], ExperienceSink] | None = None) -> dict[str, Any]:
    """Run the tries through one gateway; returns per-try rows and the summary."""
    from rich.progress import Progress

    from blacksoil.agents.launcher import open_runtime

    team = load_team(spec)
    plants = setup.toolsets_dir / "manufacturing"
    rows: list[dict[str, Any]] = []
    with open_runtime(team, setup, base_url=base_url, new_sink=new_sink) as rt, Progress() as progress:
        bar = progress.add_task("agent runs", total=tries)
        for i, t in enumerate(tasks(tries)):
            t0 = time.monotonic()
            r = rt.run(t["task"], run_id=f"bench-{int(time.time())}-{i}")
            ok = r.status == "completed" and check(plants / f"{r.run_id}.json", t)
            calls = rt.store.calls(r.run_id)
            rows.append({"task": t["task"], "status": r.status, "reason": r.reason, "steps": r.steps,
                         "tokens": r.tokens, "wall_s": round(time.monotonic() - t0, 1), "success": ok,
                         "calls": [f"{c.name}:{c.status}" for c in calls]})  # fmt: skip
            progress.advance(bar)
    reasons = Counter(str(r["reason"]) for r in rows)
    return {
        "agent_tries": tries,
        "agent_successes": sum(r["success"] for r in rows),
        "agent_completed": sum(r["status"] == "completed" for r in rows),
        "agent_steps_mean": round(sum(r["steps"] for r in rows) / max(tries, 1), 2),
        "agent_wall_s_p50": sorted(r["wall_s"] for r in rows)[tries // 2] if rows else 0.0,
        "agent_reasons": dict(reasons),
        "rows": rows,
    }
