"""The plant operator's tools: typed functions taking the Plant first, exposed to agents as ToolSpecs.

Every tool validates its arguments and raises UserError/NotFoundError that name the bad value and the fix.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Literal

from blacksoil.errors import UserError
from blacksoil.factories.toolspec import ToolSpec, bind

from . import jobshop
from .plant import BATTERY_PER_HOP, BATTERY_RESERVE, STATIONS, Plant

__all__ = [
    "TOOLS",
    "MachineState",
    "MoKind",
    "OrderPriority",
    "Priority",
    "charge_robot",
    "close_maintenance_order",
    "create_maintenance_order",
    "dispatch_robot",
    "get_machine_status",
    "get_order",
    "get_sensor_history",
    "list_jobs",
    "list_machines",
    "list_maintenance_orders",
    "list_orders",
    "list_parts",
    "list_robots",
    "predict_rul",
    "schedule_jobs",
    "set_machine_state",
    "set_order_priority",
    "tools",
]

MachineState = Literal["running", "idle", "degraded", "down"]
MoKind = Literal["inspection", "repair", "replacement"]
Priority = Literal["low", "medium", "high", "urgent"]


def _machine_view(p: Plant, m: dict[str, Any]) -> dict[str, Any]:
    return {k: m[k] for k in ("id", "kind", "station", "state", "cycle")}


def list_machines(plant: Plant, state: MachineState | None = None) -> list[dict[str, Any]]:
    """List the plant's machines with kind, station and state.

    Args:
        state: only machines in this state (running, idle, degraded, down); omit for all
    """
    ms = plant.state["machines"].values()
    return [_machine_view(plant, m) for m in ms if state is None or m["state"] == state]


def get_machine_status(plant: Plant, machine_id: str) -> dict[str, Any]:
    """Status of one machine: state, current cycle, latest sensor readings and open maintenance orders.

    Args:
        machine_id: machine id such as M3
    """
    m = plant.get("machines", machine_id, "machine")
    latest = {s: plant.sensor_history(machine_id, s, 1)[0] for s in ("s2", "s3", "s4", "s7", "s11", "s12")}
    open_mos = [o["id"] for o in plant.state["maintenance_orders"].values()
                if o["machine_id"] == machine_id and o["status"] == "open"]
    return {**_machine_view(plant, m), "latest_sensors": latest, "open_maintenance_orders": open_mos}


def get_sensor_history(plant: Plant, machine_id: str, sensor: str, last_n: int = 20) -> dict[str, Any]:
    """Recent readings of one sensor of a machine, oldest first, with the trend per cycle.

    Args:
        machine_id: machine id such as M3
        sensor: sensor name s1 … s21 (s2, s3, s4, s7, s11, s12, s15 carry the wear signal)
        last_n: how many recent cycles (1..200)
    """
    if not 1 <= last_n <= 200:
        raise UserError(f"last_n={last_n} must be between 1 and 200")
    values = plant.sensor_history(machine_id, sensor, last_n)
    return {"machine_id": machine_id, "sensor": sensor, "values": values,
            "trend_per_cycle": round(plant.sensor_trend(machine_id, sensor, min(last_n, 20)), 5)}


def predict_rul(plant: Plant, machine_id: str) -> dict[str, Any]:
    """Predict a machine's remaining useful life in cycles from its sensor history (gradient-boosting model).

    Args:
        machine_id: machine id such as M3
    """
    return {"machine_id": machine_id, "rul_cycles": plant.predicted_rul(machine_id)}


def set_machine_state(plant: Plant, machine_id: str, state: MachineState) -> dict[str, Any]:
    """Change a machine's state, e.g. take it down for maintenance or bring it back to running.

    Args:
        machine_id: machine id such as M3
        state: the new state: running, idle, degraded or down
    """
    m = plant.get("machines", machine_id, "machine")
    old, m["state"] = m["state"], state
    plant.log("set_machine_state", machine_id=machine_id, old=old, new=state)
    return _machine_view(plant, m)


def create_maintenance_order(plant: Plant, machine_id: str, kind: MoKind, priority: Priority,
                             note: str = "") -> dict[str, Any]:
    """Open a maintenance order for a machine.

    Args:
        machine_id: machine id such as M3
        kind: inspection, repair or replacement
        priority: low, medium, high or urgent
        note: free text for the technician
    """
    plant.get("machines", machine_id, "machine")
    oid = f"MO-{plant.state['next_mo']}"
    plant.state["next_mo"] += 1
    order = {"id": oid, "machine_id": machine_id, "kind": kind, "priority": priority, "note": note,
             "status": "open", "resolution": None}
    plant.state["maintenance_orders"][oid] = order
    plant.log("create_maintenance_order", order_id=oid)
    return order


def list_maintenance_orders(plant: Plant, machine_id: str | None = None,
                            status: Literal["open", "closed"] | None = None) -> list[dict[str, Any]]:
    """List maintenance orders, optionally for one machine and/or one status.

    Args:
        machine_id: only orders of this machine
        status: open or closed
    """
    if machine_id is not None:
        plant.get("machines", machine_id, "machine")
    return [o for o in plant.state["maintenance_orders"].values()
            if (machine_id is None or o["machine_id"] == machine_id) and (status is None or o["status"] == status)]


def close_maintenance_order(plant: Plant, order_id: str, resolution: str) -> dict[str, Any]:
    """Close an open maintenance order with a resolution note.

    Args:
        order_id: maintenance order id such as MO-1
        resolution: what was done
    """
    o = plant.get("maintenance_orders", order_id, "maintenance order")
    if o["status"] != "open":
        raise UserError(f"maintenance order {order_id} is already {o['status']}; only open orders can be closed")
    o["status"], o["resolution"] = "closed", resolution
    return o


def list_jobs(plant: Plant, status: Literal["queued", "scheduled"] | None = None) -> list[dict[str, Any]]:
    """List production jobs with their operations (machine and hours) and status.

    Args:
        status: queued or scheduled
    """
    return [j for j in plant.state["jobs"].values() if status is None or j["status"] == status]


def schedule_jobs(plant: Plant, job_ids: list[str], time_limit_s: float = 5.0) -> dict[str, Any]:
    """Schedule jobs on their machines minimizing makespan (OR-Tools CP-SAT); every machine used must not be down.

    Args:
        job_ids: ids of the jobs to schedule, such as ["J1", "J2"]
        time_limit_s: solver time limit in seconds (0.1..30)
    """
    if not job_ids:
        raise UserError("job_ids is empty; pass at least one job id such as J1")
    if not 0.1 <= time_limit_s <= 30:
        raise UserError(f"time_limit_s={time_limit_s} must be between 0.1 and 30 seconds")
    jobs = [plant.get("jobs", j, "job") for j in job_ids]
    mids: list[str] = []
    for j in jobs:
        for op in j["operations"]:
            m = plant.get("machines", op["machine_id"], "machine")
            if m["state"] == "down":
                raise UserError(f"job {j['id']} needs machine {m['id']}, which is down; "
                                f"repair it first or leave {j['id']} out of job_ids")
            if op["machine_id"] not in mids:
                mids.append(op["machine_id"])
    inst = jobshop.Instance(
        "plant", [[op["duration_h"] for op in j["operations"]] for j in jobs],
        [[mids.index(op["machine_id"]) for op in j["operations"]] for j in jobs],
    )
    sched = jobshop.solve(inst, time_limit_s, plant.config.jobshop_workers)
    for j, starts in zip(jobs, sched.starts, strict=True):
        durs = [op["duration_h"] for op in j["operations"]]
        j["status"], j["start_h"], j["end_h"] = "scheduled", starts[0], starts[-1] + durs[-1]
    plant.state["schedule"] = {"job_ids": list(job_ids), "makespan_h": sched.makespan, "status": sched.status}
    plant.log("schedule_jobs", job_ids=list(job_ids), makespan_h=sched.makespan)
    return {"makespan_h": sched.makespan, "status": sched.status,
            "jobs": [{"id": j["id"], "start_h": j["start_h"], "end_h": j["end_h"]} for j in jobs]}


def list_orders(plant: Plant, status: Literal["open", "on_hold", "shipped"] | None = None) -> list[dict[str, Any]]:
    """List customer orders (customer, product, quantity, due in hours, priority, status).

    Args:
        status: open, on_hold or shipped
    """
    return [o for o in plant.state["orders"].values() if status is None or o["status"] == status]


def get_order(plant: Plant, order_id: str) -> dict[str, Any]:
    """One customer order with the ids of its production jobs.

    Args:
        order_id: order id such as O101
    """
    o = plant.get("orders", order_id, "order")
    return {**o, "job_ids": [j["id"] for j in plant.state["jobs"].values() if j["order_id"] == order_id]}


OrderPriority = Literal["low", "normal", "high", "rush"]


def set_order_priority(plant: Plant, order_id: str, priority: OrderPriority) -> dict[str, Any]:
    """Change a customer order's priority.

    Args:
        order_id: order id such as O101
        priority: low, normal, high or rush
    """
    o = plant.get("orders", order_id, "order")
    o["priority"] = priority
    return o


def list_robots(plant: Plant) -> list[dict[str, Any]]:
    """List mobile robots with location, battery percent, status and carried part."""
    return list(plant.state["robots"].values())


def list_parts(plant: Plant, location: str | None = None) -> list[dict[str, Any]]:
    """List parts and where they are.

    Args:
        location: only parts at this station
    """
    return [p for p in plant.state["parts"].values() if location is None or p["location"] == location]


def _hops(a: str, b: str) -> int:
    return abs(STATIONS.index(a) - STATIONS.index(b))


def _station(name: str, arg: str) -> str:
    if name not in STATIONS:
        raise UserError(f"{arg}={name!r} is not a station; use one of {', '.join(STATIONS)}", param=arg)
    return name


def dispatch_robot(plant: Plant, robot_id: str, part_id: str, to_station: str) -> dict[str, Any]:
    """Send a robot to pick up a part where it lies and deliver it to a station; costs battery per station crossed.

    Args:
        robot_id: robot id such as R1
        part_id: part id such as P2
        to_station: destination: receiving, S1, S2, S3, S4, warehouse, shipping or charging
    """
    r = plant.get("robots", robot_id, "robot")
    part = plant.get("parts", part_id, "part")
    _station(to_station, "to_station")
    need = BATTERY_PER_HOP * (_hops(r["location"], part["location"]) + _hops(part["location"], to_station))
    if r["status"] != "idle":
        raise UserError(f"robot {robot_id} is {r['status']}; pick an idle robot (see list_robots)")
    if r["battery"] - need < BATTERY_RESERVE:
        raise UserError(f"robot {robot_id} has {r['battery']}% battery but the trip needs {need:.0f}% and "
                        f"{BATTERY_RESERVE:.0f}% must "
                        "remain; charge it (charge_robot) or use another robot")
    r["battery"] = round(r["battery"] - need, 1)
    r["location"] = part["location"] = to_station
    plant.log("dispatch_robot", robot_id=robot_id, part_id=part_id, to=to_station)
    return {"robot": r, "part": part}


def charge_robot(plant: Plant, robot_id: str) -> dict[str, Any]:
    """Drive a robot to the charging station and charge it to 100%.

    Args:
        robot_id: robot id such as R1
    """
    r = plant.get("robots", robot_id, "robot")
    r["location"], r["battery"] = "charging", 100
    return r


TOOLS = (
    list_machines, get_machine_status, get_sensor_history, predict_rul, set_machine_state,
    create_maintenance_order, list_maintenance_orders, close_maintenance_order, list_jobs, schedule_jobs,
    list_orders, get_order, set_order_priority, list_robots, list_parts, dispatch_robot, charge_robot,
)


# Parameters that name a record of the plant; maintenance order ids are created at run time, so not listed.
_ID_PARAMS = {"machine_id": "machines", "robot_id": "robots", "part_id": "parts", "job_ids": "jobs",
              "order_id": "orders"}
_NOT_IDS = {("close_maintenance_order", "order_id")}


def _with_id_enums(spec: ToolSpec, plant: Plant) -> ToolSpec:
    """The schema with id parameters as enums of the ids that exist, so constrained decoding emits only real ids."""
    props = dict(spec.parameters["properties"])
    for name, collection in _ID_PARAMS.items():
        if name in props and (spec.name, name) not in _NOT_IDS:
            ids = sorted(plant.state[collection], key=lambda x: (len(x), x))
            prop = dict(props[name])
            if prop.get("type") == "array":
                prop["items"] = {"type": "string", "enum": ids}
            else:
                prop["enum"] = ids
            props[name] = prop
    return replace(spec, parameters={**spec.parameters, "properties": props})


def tools(plant: Plant) -> list[ToolSpec]:
    """All plant tools bound to `plant`, ready for an agent runtime (id parameters list the plant's ids)."""
    return [_with_id_enums(bind(fn, plant), plant) for fn in TOOLS]
