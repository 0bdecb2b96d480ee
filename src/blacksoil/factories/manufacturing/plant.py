"""A deterministic, seeded plant: machines backed by C-MAPSS engines, jobs, orders, maintenance, robots.

The whole state is one JSON-able dict so that checkers can read it and task files can override it.
"""

from __future__ import annotations

import copy
import random
from pathlib import Path
from typing import Any

import numpy as np

from blacksoil.errors import ConfigError, InternalError
from blacksoil.factories.manufacturing.config import ManufacturingConfig
from blacksoil.factories.toolspec import existing

from . import rul

__all__ = [
    "BATTERY_PER_HOP",
    "BATTERY_RESERVE",
    "CUSTOMERS",
    "DEGRADED_BELOW",
    "KINDS",
    "PART_KINDS",
    "PRODUCTS",
    "STATIONS",
    "Plant",
]

KINDS = ("cnc_mill", "lathe", "press", "welder", "grinder", "drill", "paint_booth", "assembly_cell")
STATIONS = ("receiving", "S1", "S2", "S3", "S4", "warehouse", "shipping", "charging")
PRODUCTS = ("gearbox", "pump_housing", "bracket", "valve_body", "shaft", "flange")
CUSTOMERS = ("Acme Motors", "Nordwind Energy", "Kite Aerospace", "Harbor Pumps", "Ridge Agri")
PART_KINDS = ("steel_blank", "casting", "bar_stock", "fastener_kit", "bearing")
DEGRADED_BELOW = 30  # true remaining cycles under which a machine shows as degraded
BATTERY_PER_HOP = 5.0  # battery percent a robot spends per station it moves across
BATTERY_RESERVE = 10.0  # battery percent a trip must leave


class Plant:
    """The plant state plus the helpers tools and checkers share (sensor data, RUL predictions)."""

    def __init__(self, state: dict[str, Any], *, home: Path | None = None,
                 config: ManufacturingConfig | None = None) -> None:
        """`home` (RUL model cache) and `config` (RUL model, job-shop workers) are the caller's settings. Task
        generation and checkers, which never predict a RUL or solve a schedule, may leave them out."""
        self.state = state
        self._rul_cache: dict[str, float] = {}
        self._home, self._config = home, config

    @property
    def home(self) -> Path:
        """Home folder of the cached RUL model."""
        if self._home is None:
            raise InternalError("this plant was built without settings: pass home= (and config=) to Plant or "
                                "Plant.create to predict a RUL (AgentScore: EnvSettings to run_tasks/make_env)")
        return self._home

    @property
    def config(self) -> ManufacturingConfig:
        """The manufacturing settings (RUL model, job-shop workers)."""
        if self._config is None:
            raise InternalError("this plant was built without settings: pass config= (and home=) to Plant or "
                                "Plant.create to use the RUL model or the solver (AgentScore: EnvSettings to "
                                "run_tasks/make_env)")
        return self._config

    # --- construction -------------------------------------------------------------------------
    @classmethod
    def create(cls, seed: int = 0, overrides: dict[str, Any] | None = None, machines: int = 8,
               robots: int = 3, *, home: Path | None = None, config: ManufacturingConfig | None = None) -> Plant:
        """Build the plant for `seed`, then deep-merge `overrides` (unknown keys are rejected, new records allowed)."""
        if not 1 <= machines <= len(KINDS) * 2:
            raise ConfigError(f"machines={machines} must be between 1 and {len(KINDS) * 2}")
        rng = random.Random(seed)
        units = rng.sample(sorted(rul.test_engines()), machines)
        truth = rul.test_true_rul()
        ms: dict[str, dict[str, Any]] = {}
        for i, unit in enumerate(units):
            eng = rul.test_engines()[unit]
            state = "degraded" if truth[unit] < DEGRADED_BELOW else rng.choice(["running"] * 4 + ["idle"])
            ms[f"M{i + 1}"] = {
                "id": f"M{i + 1}", "kind": KINDS[i % len(KINDS)], "station": STATIONS[1 + i % 4],
                "state": state, "engine_unit": unit, "cycle": int(eng.cycles[-1]),
            }
        if rng.random() < 0.5:
            ms[rng.choice(sorted(ms))]["state"] = "down"
        mids = sorted(ms, key=lambda m: int(m[1:]))
        orders: dict[str, dict[str, Any]] = {}
        for i in range(4):
            oid = f"O{101 + i}"
            orders[oid] = {"id": oid, "customer": rng.choice(CUSTOMERS), "product": rng.choice(PRODUCTS),
                           "quantity": rng.randint(5, 200), "due_hours": rng.randint(8, 96),
                           "priority": "normal", "status": "open"}
        jobs: dict[str, dict[str, Any]] = {}
        for i in range(6):
            jid = f"J{i + 1}"
            route = rng.sample(mids, rng.randint(2, min(4, len(mids))))
            jobs[jid] = {"id": jid, "order_id": f"O{101 + i % 4}",
                         "operations": [{"machine_id": m, "duration_h": rng.randint(1, 9)} for m in route],
                         "status": "queued", "start_h": None, "end_h": None}
        rs = {}
        for i in range(robots):
            rid = f"R{i + 1}"
            rs[rid] = {"id": rid, "location": rng.choice(STATIONS), "battery": rng.randint(20, 100),
                       "status": "idle", "carrying": None}
        parts = {}
        for i in range(6):
            pid = f"P{i + 1}"
            parts[pid] = {"id": pid, "kind": rng.choice(PART_KINDS), "location": rng.choice(["receiving", "warehouse"])}
        state_all: dict[str, Any] = {
            "seed": seed, "clock_h": 0, "machines": ms, "jobs": jobs, "orders": orders, "robots": rs,
            "parts": parts, "maintenance_orders": {}, "schedule": None, "next_mo": 1, "events": [],
        }
        if overrides:
            _merge(state_all, overrides, "overrides")
        return cls(state_all, home=home, config=config)

    def snapshot(self) -> dict[str, Any]:
        """A deep copy of the state (what checkers see)."""
        return copy.deepcopy(self.state)

    # --- lookups that raise clear errors ------------------------------------------------------
    def get(self, collection: str, key: str, what: str) -> dict[str, Any]:
        """One record of a collection, or NotFoundError listing the ids that exist."""
        return existing(self.state[collection], key, what)

    def log(self, event: str, **data: Any) -> None:
        """Append to the event log (τ²-style checkers ignore it; it helps humans read a run)."""
        self.state["events"].append({"event": event, **data})

    # --- sensors and RUL ----------------------------------------------------------------------
    def engine(self, machine_id: str) -> rul.Engine:
        """The C-MAPSS engine run behind a machine."""
        return rul.test_engines()[int(self.get("machines", machine_id, "machine")["engine_unit"])]

    def sensor_history(self, machine_id: str, sensor: str, last_n: int) -> list[float]:
        """The last `last_n` readings of one sensor up to the machine's current cycle."""
        m = self.get("machines", machine_id, "machine")
        eng = self.engine(machine_id)
        values = eng.sensor(sensor)[eng.cycles <= m["cycle"]]
        return [round(float(v), 4) for v in values[-last_n:]]

    def predicted_rul(self, machine_id: str) -> float:
        """Predicted remaining cycles at the machine's current cycle (rounded to 0.1)."""
        m = self.get("machines", machine_id, "machine")
        key = f"{machine_id}@{m['engine_unit']}:{m['cycle']}"
        if key not in self._rul_cache:
            model = rul.rul_model(self.home, self.config)
            self._rul_cache[key] = round(model.predict_engine(self.engine(machine_id), m["cycle"]), 1)
        return self._rul_cache[key]

    def sensor_trend(self, machine_id: str, sensor: str, window: int = 20) -> float:
        """Least-squares slope of the last `window` readings (units per cycle)."""
        ys = np.array(self.sensor_history(machine_id, sensor, window))
        if len(ys) < 2:
            return 0.0
        return float(np.polyfit(np.arange(len(ys)), ys, 1)[0])


_COLLECTIONS = {f"overrides.{c}" for c in ("machines", "jobs", "orders", "robots", "parts", "maintenance_orders")}


def _merge(base: dict[str, Any], over: dict[str, Any], where: str) -> None:
    """Deep-merge `over` into `base`; a key absent from base is a typo and is rejected."""
    for key, value in over.items():
        if key not in base and where not in _COLLECTIONS:
            raise ConfigError(f"{where}.{key} does not exist in the plant state; known: {', '.join(sorted(base))}")
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            _merge(base[key], value, f"{where}.{key}")
        else:
            base[key] = copy.deepcopy(value)
