"""The seeded plant and the operator tools: determinism, real sensor data, overrides, clear tool errors."""

from __future__ import annotations

from typing import Any

import pytest

from blacksoil.errors import ConfigError, InternalError, NotFoundError, UserError
from blacksoil.factories.env_settings import EnvSettings
from blacksoil.factories.manufacturing import rul
from blacksoil.factories.manufacturing.plant import Plant
from blacksoil.factories.manufacturing.tools import TOOLS, tools
from blacksoil.factories.toolspec import ToolSpec


def _tools(p: Plant) -> dict[str, ToolSpec]:
    return {t.name: t for t in tools(p)}


def test_same_seed_same_plant_other_seed_other_plant() -> None:
    assert Plant.create(3).snapshot() == Plant.create(3).snapshot()
    assert Plant.create(3).snapshot() != Plant.create(4).snapshot()


def test_machines_are_backed_by_real_fd001_test_engines() -> None:
    p = Plant.create(0)
    m = p.state["machines"]["M1"]
    eng = rul.test_engines()[m["engine_unit"]]
    assert m["cycle"] == int(eng.cycles[-1])
    hist = _tools(p)["get_sensor_history"].call({"machine_id": "M1", "sensor": "s11", "last_n": 5})
    assert hist["values"] == [round(float(v), 4) for v in eng.sensor("s11")[-5:]]
    # Machines whose engine is truly close to failure show as degraded.
    for mid, rec in p.state["machines"].items():
        if rul.test_true_rul()[rec["engine_unit"]] < 30 and rec["state"] != "down":
            assert rec["state"] == "degraded", mid


def test_overrides_merge_and_typos_are_rejected() -> None:
    p = Plant.create(0, {"machines": {"M2": {"state": "down"}}, "robots": {"R1": {"battery": 12}}})
    assert p.state["machines"]["M2"]["state"] == "down" and p.state["robots"]["R1"]["battery"] == 12
    with pytest.raises(ConfigError, match=r"overrides\.machines\.M2\.colour"):
        Plant.create(0, {"machines": {"M2": {"colour": "red"}}})
    with pytest.raises(ConfigError, match=r"overrides\.widgets"):
        Plant.create(0, {"widgets": {}})


def test_every_tool_has_a_schema_and_description() -> None:
    specs = tools(Plant.create(0))
    assert len(specs) == len(TOOLS) >= 15
    for s in specs:
        assert s.description and s.parameters["type"] == "object"
        for name, prop in s.parameters["properties"].items():
            assert "type" in prop, (s.name, name)


def test_id_parameters_list_the_plant_ids() -> None:
    t = _tools(Plant.create(0))
    assert t["predict_rul"].parameters["properties"]["machine_id"]["enum"] == [f"M{i}" for i in range(1, 9)]
    assert t["schedule_jobs"].parameters["properties"]["job_ids"]["items"]["enum"][0] == "J1"
    assert "enum" not in t["close_maintenance_order"].parameters["properties"]["order_id"]
    with pytest.raises(UserError, match="'job_ids'"):
        t["schedule_jobs"].call({"job_ids": ["J99"]})


def test_maintenance_order_lifecycle() -> None:
    p = Plant.create(1)
    t = _tools(p)
    mo = t["create_maintenance_order"].call({"machine_id": "M2", "kind": "inspection", "priority": "high"})
    assert mo["id"] == "MO-1" and p.state["maintenance_orders"]["MO-1"]["status"] == "open"
    assert [o["id"] for o in t["list_maintenance_orders"].call({"machine_id": "M2", "status": "open"})] == ["MO-1"]
    assert t["get_machine_status"].call({"machine_id": "M2"})["open_maintenance_orders"] == ["MO-1"]
    t["close_maintenance_order"].call({"order_id": "MO-1", "resolution": "ok"})
    with pytest.raises(UserError, match="already closed"):
        t["close_maintenance_order"].call({"order_id": "MO-1", "resolution": "again"})


def test_schedule_jobs_uses_cp_sat_and_refuses_down_machines(env_settings: EnvSettings) -> None:
    p = Plant.create(4, home=env_settings.home, config=env_settings.manufacturing)
    t = _tools(p)
    down = [m for m, x in p.state["machines"].items() if x["state"] == "down"]
    assert down, "seed 4 has a machine down"
    blocked = next(j for j, x in p.state["jobs"].items() if any(op["machine_id"] == down[0] for op in x["operations"]))
    with pytest.raises(UserError, match=f"{blocked} needs machine {down[0]}"):
        t["schedule_jobs"].call({"job_ids": [blocked]})
    free = [j for j, x in p.state["jobs"].items() if all(op["machine_id"] not in down for op in x["operations"])]
    out = t["schedule_jobs"].call({"job_ids": free, "time_limit_s": 2.0})
    longest = max(sum(op["duration_h"] for op in p.state["jobs"][j]["operations"]) for j in free)
    assert out["makespan_h"] >= longest
    assert all(p.state["jobs"][j]["status"] == "scheduled" for j in free)
    with pytest.raises(UserError, match="job_ids is empty"):
        t["schedule_jobs"].call({"job_ids": []})


def test_robot_dispatch_spends_battery_and_refuses_flat_robots() -> None:
    p = Plant.create(0, {"robots": {"R1": {"location": "receiving", "battery": 100}}})
    t = _tools(p)
    part = p.state["parts"]["P1"]
    out = t["dispatch_robot"].call({"robot_id": "R1", "part_id": "P1", "to_station": "S2"})
    assert out["part"]["location"] == "S2" == p.state["robots"]["R1"]["location"]
    assert p.state["robots"]["R1"]["battery"] < 100 and part["location"] == "S2"
    p.state["robots"]["R1"]["battery"] = 12
    with pytest.raises(UserError, match="charge_robot"):
        t["dispatch_robot"].call({"robot_id": "R1", "part_id": "P1", "to_station": "shipping"})
    t["charge_robot"].call({"robot_id": "R1"})
    t["dispatch_robot"].call({"robot_id": "R1", "part_id": "P1", "to_station": "shipping"})
    with pytest.raises(UserError, match="to_station='S9'"):
        t["dispatch_robot"].call({"robot_id": "R1", "part_id": "P1", "to_station": "S9"})


@pytest.mark.parametrize(("tool", "args", "named"), [
    ("get_machine_status", {"machine_id": "M99"}, "M99"),
    ("predict_rul", {"machine_id": "X"}, "'X'"),
    ("get_sensor_history", {"machine_id": "M1", "sensor": "temp"}, "temp"),
    ("get_sensor_history", {"machine_id": "M1", "sensor": "s2", "last_n": 0}, "last_n=0"),
    ("set_machine_state", {"machine_id": "M1", "state": "broken"}, "'state'"),
    ("get_order", {"order_id": "O1"}, "O1"),
    ("dispatch_robot", {"robot_id": "R9", "part_id": "P1", "to_station": "S1"}, "R9"),
])
def test_tool_errors_name_the_bad_value(tool: str, args: dict[str, Any], named: str) -> None:
    with pytest.raises((UserError, NotFoundError)) as e:
        _tools(Plant.create(0))[tool].call(args)
    assert named in e.value.message


def test_a_plant_without_settings_names_what_to_pass_instead_of_reading_a_global() -> None:
    # Task generation and checkers build plants from state alone; the RUL model and the solver need the caller's.
    p = Plant.create(0)
    t = _tools(p)
    with pytest.raises(InternalError, match="pass home="):
        t["predict_rul"].call({"machine_id": "M1"})
    down = {m for m, x in p.state["machines"].items() if x["state"] == "down"}
    free = next(j for j, x in p.state["jobs"].items() if all(op["machine_id"] not in down for op in x["operations"]))
    with pytest.raises(InternalError, match="pass config="):
        t["schedule_jobs"].call({"job_ids": [free]})


def test_a_plant_with_settings_predicts_with_the_model_cached_under_its_home(env_settings: EnvSettings) -> None:
    p = Plant.create(0, home=env_settings.home, config=env_settings.manufacturing)
    assert (p.home, p.config) == (env_settings.home, env_settings.manufacturing)
    assert _tools(p)["predict_rul"].call({"machine_id": "M1"})["rul_cycles"] >= 0
