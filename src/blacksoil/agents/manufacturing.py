"""The manufacturing plant's tools for agents: one persisted plant per run, safety flags, policy facts.

The plant tools (factories/manufacturing) take the Plant first; each run gets its own plant, saved after each call.
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Any

from blacksoil.agents.tools import Tool, ToolContext, ToolFlags
from blacksoil.errors import ConfigError
from blacksoil.factories.manufacturing.config import ManufacturingConfig

#: Tools that change the plant: never executed twice for one call, count for the rule of two.
STATE_CHANGING = frozenset({
    "set_machine_state", "create_maintenance_order", "close_maintenance_order", "schedule_jobs",
    "set_order_priority", "dispatch_robot", "charge_robot",
})  # fmt: skip


def _root(run_id: str) -> str:
    # Worker sub-runs (`<run>.<call>`) act on their supervisor's plant.
    return run_id.split(".", 1)[0]


class PlantToolset:
    """The plant tools bound to a per-run plant stored as JSON under `folder`."""

    def __init__(self, folder: Path, seed: int = 0, overrides: dict[str, Any] | None = None, *,
                 home: Path | None = None, config: ManufacturingConfig | None = None) -> None:
        """`home` and `config`: the manufacturing settings its plants use (RUL model cache, job-shop workers); the
        runtime's Toolbox hands them in (None: plants without settings, whose RUL and solver tools then fail with
        an error naming what to pass)."""
        self.folder = Path(folder)
        self.seed = seed
        self.overrides = overrides
        self.home, self.config = home, config
        self._plants: dict[str, Any] = {}
        self._lock = threading.Lock()

    def path(self, run_id: str) -> Path:
        return self.folder / f"{_root(run_id)}.json"

    def plant(self, run_id: str) -> Any:
        """The run's plant: loaded from its file, else created from the seed."""
        from blacksoil.factories.manufacturing.plant import Plant

        key = _root(run_id)
        with self._lock:
            if key not in self._plants:
                p = self.path(key)
                if p.exists():
                    self._plants[key] = Plant(json.loads(p.read_text()), home=self.home, config=self.config)
                else:
                    self._plants[key] = Plant.create(seed=self.seed, overrides=self.overrides, home=self.home,
                                                     config=self.config)
                    self._save(key)
            return self._plants[key]

    def _save(self, key: str) -> None:
        # Write-then-rename: a crash leaves the old state or the new one, never half a file.
        self.folder.mkdir(parents=True, exist_ok=True)
        tmp = self.path(key).with_suffix(".tmp")
        with tmp.open("w") as f:
            json.dump(self._plants[key].state, f, default=str)
            f.flush()
            os.fsync(f.fileno())
        tmp.replace(self.path(key))

    def tools(self) -> list[Tool]:
        """Every plant tool as an agent tool."""
        from blacksoil.factories.manufacturing import tools as mfg
        from blacksoil.factories.toolspec import bind

        def invoker(fn: Any) -> Any:
            def invoke(arguments: dict[str, Any], ctx: ToolContext) -> Any:
                plant = self.plant(ctx.run_id)
                try:
                    return bind(fn, plant).call(arguments)
                finally:
                    if fn.__name__ in STATE_CHANGING:
                        with self._lock:
                            self._save(_root(ctx.run_id))

            return invoke

        ids = self._id_enums()
        out = []
        for fn in mfg.TOOLS:
            spec = bind(fn, None)
            out.append(
                Tool(
                    name=spec.name, description=spec.description, parameters=_with_ids(spec.name, spec.parameters, ids),
                    flags=ToolFlags(state_changing=spec.name in STATE_CHANGING), invoke=invoker(fn),
                    source=f"python:{fn.__module__}.{fn.__name__}",
                )
            )  # fmt: skip
        if not out:
            raise ConfigError("the manufacturing tool set is empty; is blacksoil.factories.manufacturing installed?")
        return out

    def facts(self, run_id: str) -> dict[str, Any]:
        """Plant state the policies read: stations under maintenance (a machine down or an open order there) and
        the machines that are down (security/policies/10-manufacturing.cedar)."""
        state = self.plant(run_id).state
        machines = state["machines"]
        zones = {m["station"] for m in machines.values() if m["state"] == "down"}
        zones |= {
            machines[o["machine_id"]]["station"]
            for o in state["maintenance_orders"].values()
            if o["status"] == "open" and o["machine_id"] in machines
        }
        down = sorted(m["id"] for m in machines.values() if m["state"] == "down")
        return {"zones_under_maintenance": sorted(zones), "machines_down": down}

    def _id_enums(self) -> dict[str, list[str]]:
        """The ids that exist in a fresh plant of this seed (machines, robots, parts, jobs, orders never change)."""
        from blacksoil.factories.manufacturing.plant import Plant

        st = Plant.create(seed=self.seed, overrides=self.overrides).state  # ids only: no settings needed
        return {"machine_id": sorted(st["machines"]), "robot_id": sorted(st["robots"]), "part_id": sorted(st["parts"]),
                "job_ids": sorted(st["jobs"]), "order_id": sorted(st["orders"])}  # fmt: skip


#: Parameters whose name matches an id kind but mean another thing (maintenance order ids are made at run time).
_NOT_IDS = {("close_maintenance_order", "order_id")}


def _with_ids(tool: str, params: dict[str, Any], ids: dict[str, list[str]]) -> dict[str, Any]:
    """The plant schema with id parameters as enums of the ids that exist, and without `nullable` marks.

    An enum lets constrained decoding emit only real ids: the small default model otherwise runs on into
    strings such as "M3_123456…" until max_tokens (measured).
    """
    props = {}
    for name, prop in params["properties"].items():
        p = {k: v for k, v in prop.items() if k != "nullable"}
        if name in ids and (tool, name) not in _NOT_IDS:
            if p.get("type") == "array":
                p["items"] = {"type": "string", "enum": ids[name]}
            else:
                p["enum"] = ids[name]
        props[name] = p
    return {**params, "properties": props}
