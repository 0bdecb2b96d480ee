"""The manufacturing tool set in the agent loop: real plant, shipped + example Cedar policies, scripted model."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from blacksoil.agents.loop import AgentRuntime
from blacksoil.agents.manufacturing import PlantToolset
from blacksoil.agents.spec import load_team
from blacksoil.agents.toolbox import bound_strings

EXAMPLES = Path(__file__).parents[2] / "examples" / "agents"


@pytest.fixture
def operator() -> Any:
    return load_team(EXAMPLES / "plant_operator.yaml")


def _plant(rt: AgentRuntime, run_id: str) -> dict[str, Any]:
    # The runtime keeps tool-set state where it was told (here: beside the test's run store).
    path = rt.toolbox.folder / "manufacturing" / f"{run_id}.json"
    return json.loads(path.read_text())


def test_schema_uses_real_ids_and_bounded_strings(tmp_path: Path) -> None:
    tools = {t.name: t for t in PlantToolset(tmp_path).tools()}
    mo = tools["create_maintenance_order"].parameters
    assert mo["properties"]["machine_id"]["enum"] == [f"M{i}" for i in range(1, 9)]
    assert mo["required"] == ["machine_id", "kind", "priority"]
    assert "enum" not in tools["close_maintenance_order"].parameters["properties"]["order_id"]
    assert tools["schedule_jobs"].parameters["properties"]["job_ids"]["items"]["enum"][0] == "J1"
    assert tools["create_maintenance_order"].flags.state_changing and not tools["list_machines"].flags.state_changing
    bounded = bound_strings(mo, 50)
    assert bounded["properties"]["note"]["maxLength"] == 50 and "maxLength" not in bounded["properties"]["kind"]


def test_operator_opens_an_order_on_the_plant(make_runtime: Any, operator: Any) -> None:
    script = [
        {"calls": [["create_maintenance_order", {"machine_id": "M3", "kind": "inspection", "priority": "high"}]]},
        {"content": "opened MO-1"},
    ]
    rt, model = make_runtime(script, operator)
    r = rt.run("Open a high priority inspection order for M3.")
    assert (r.status, r.answer) == ("completed", "opened MO-1")
    orders = _plant(rt, r.run_id)["maintenance_orders"]
    assert [(o["machine_id"], o["kind"], o["priority"]) for o in orders.values()] == [("M3", "inspection", "high")]
    offered = {t["function"]["name"] for t in model.requests[0]["tools"]}
    assert {"list_machines", "create_maintenance_order", "set_machine_state"} <= offered


def test_urgent_order_waits_for_a_human(make_runtime: Any, operator: Any) -> None:
    script = [
        {"calls": [["create_maintenance_order", {"machine_id": "M2", "kind": "repair", "priority": "urgent"}]]},
        {"content": "done"},
    ]
    rt, _ = make_runtime(script, operator)
    r = rt.run("Urgent repair of M2.")
    assert r.status == "paused" and "urgent maintenance orders" in r.pending[0].reasons[0]
    assert _plant(rt, r.run_id)["maintenance_orders"] == {}
    rt.decide(r.run_id, r.pending[0].call_id, approve=True, by="shift-lead")
    assert rt.resume(r.run_id).status == "completed"
    assert len(_plant(rt, r.run_id)["maintenance_orders"]) == 1


def test_facts_follow_the_plant_and_state_survives_a_new_toolset(tmp_path: Path) -> None:
    ts = PlantToolset(tmp_path, seed=0)
    plant = ts.plant("run-a")
    down = next(m for m in plant.state["machines"].values() if m["state"] != "down")
    tools = {t.name: t for t in ts.tools()}
    from blacksoil.agents.tools import ToolContext

    ctx = ToolContext("run-a", "s1c0", "run-a:s1c0", "op")
    tools["set_machine_state"].invoke({"machine_id": down["id"], "state": "down"}, ctx)
    assert down["station"] in ts.facts("run-a")["zones_under_maintenance"]
    again = PlantToolset(tmp_path, seed=0)
    assert again.plant("run-a").state["machines"][down["id"]]["state"] == "down"
    assert again.plant("run-a.s2c0") is again.plant("run-a")  # worker sub-runs share the supervisor's plant


def test_policy_entity_traits_mark_the_run(make_runtime: Any, operator: Any) -> None:
    # list_orders returns customer-written notes: security's entities declare it untrusted_output
    rt, _ = make_runtime([{"calls": [["list_orders", {}]]}, {"content": "listed"}], operator)
    r = rt.run("List the orders.")
    assert rt.store.get_run(r.run_id).flags["untrusted_input"] is True


def test_restart_of_a_down_machine_needs_a_human(make_runtime: Any, operator: Any) -> None:
    from agent_helpers import team

    down = {"manufacturing": {"seed": 0, "overrides": {"machines": {"M2": {"state": "down"}}}}}
    spec = operator.entry.model_dump() | {"toolset_options": down}
    script = [{"calls": [["set_machine_state", {"machine_id": "M2", "state": "running"}]]}, {"content": "ok"}]
    rt, _ = make_runtime(script, team(spec))
    r = rt.run("Restart M2.")
    assert r.status == "paused" and "restarting a machine" in r.pending[0].reasons[0]
    assert _plant(rt, r.run_id)["machines"]["M2"]["state"] == "down"
