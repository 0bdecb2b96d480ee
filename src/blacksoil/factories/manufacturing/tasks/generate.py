"""Writes manufacturing.yaml and jobshop_quality.yaml deterministically from seeded plants and instances.

Facts the checkers need (lowest-RUL machine, optimal makespans, best dispatch rule) are computed here from the
same plant, model and solver the tools use; the oracle test proves the scripts still satisfy them.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from blacksoil.factories.env_settings import EnvSettings
from blacksoil.factories.manufacturing import jobshop
from blacksoil.factories.manufacturing.plant import BATTERY_PER_HOP, BATTERY_RESERVE, Plant

HERE = Path(__file__).parent
Task = dict[str, Any]
STATUS_TOOLS = ["list_machines", "get_machine_status"]
MO_TOOLS = ["list_machines", "predict_rul", "create_maintenance_order", "list_maintenance_orders"]


def _split(i: int) -> str:
    return ("train", "train", "train", "dev", "test")[i % 5]


def _mids(p: Plant) -> list[str]:
    return sorted(p.state["machines"], key=lambda m: int(m[1:]))


def _ruls(p: Plant) -> dict[str, float]:
    return {m: p.predicted_rul(m) for m in _mids(p)}


def _gap_threshold(values: list[float], lo: float, hi: float) -> float | None:
    """A round threshold in [lo, hi] at least 3 cycles from every value (robust to tiny model drift)."""
    for t in range(int(lo), int(hi) + 1, 5):
        if all(abs(v - t) >= 3 for v in values) and any(v < t for v in values):
            return float(t)
    return None


def machine_state(p: Plant, rng: random.Random) -> Task | None:
    m = rng.choice(_mids(p))
    state = p.state["machines"][m]["state"]
    return {"category": "status", "instruction": f"What state is machine {m} in right now?",
            "tools": STATUS_TOOLS, "checker": [{"answer_contains": state}],
            "oracle": [{"tool": "get_machine_status", "args": {"machine_id": m}},
                       {"answer": f"{m} is {{steps[0][state]}}."}]}


def count_state(p: Plant, rng: random.Random) -> Task | None:
    state = rng.choice(["degraded", "running", "idle"])
    n = sum(1 for m in p.state["machines"].values() if m["state"] == state)
    if n == 0:
        return None
    return {"category": "status", "instruction": f"How many machines are {state}? Answer with the number.",
            "tools": STATUS_TOOLS, "checker": [{"answer_number": n}],
            "oracle": [{"tool": "list_machines", "args": {"state": state}},
                       {"answer": f"{n} machines are {state}."}]}


def sensor_reading(p: Plant, rng: random.Random) -> Task | None:
    m, s = rng.choice(_mids(p)), rng.choice(["s2", "s3", "s4", "s7", "s11", "s12"])
    v = p.sensor_history(m, s, 1)[0]
    return {"category": "sensors", "instruction": f"What is the latest reading of sensor {s} on machine {m}?",
            "tools": ["get_sensor_history", "get_machine_status"], "checker": [{"answer_number": v, "tol": 0.01}],
            "oracle": [{"tool": "get_sensor_history", "args": {"machine_id": m, "sensor": s, "last_n": 1}},
                       {"answer": f"{s} on {m} reads {{steps[0][values][0]}}."}]}


def rul_question(p: Plant, rng: random.Random) -> Task | None:
    m = rng.choice(_mids(p))
    r = p.predicted_rul(m)
    return {"category": "rul", "instruction": f"Predict the remaining useful life of machine {m} in cycles.",
            "tools": ["predict_rul", "get_machine_status"], "checker": [{"answer_number": r, "tol": 1.0}],
            "oracle": [{"tool": "predict_rul", "args": {"machine_id": m}},
                       {"answer": f"{m} has about {{steps[0][rul_cycles]}} cycles left."}]}


def open_inspection(p: Plant, rng: random.Random) -> Task | None:
    m, prio = rng.choice(_mids(p)), rng.choice(["medium", "high"])
    return {"category": "maintenance", "instruction": f"Open a {prio}-priority inspection order for machine {m}: "
            "operators report unusual vibration.", "tools": MO_TOOLS,
            "checker": [{"count": "maintenance_orders", "where": {"machine_id": m, "kind": "inspection",
                                                                  "priority": prio, "status": "open"}, "eq": 1},
                        {"count": "maintenance_orders", "where": {"machine_id": {"ne": m}}, "eq": 0}],
            "oracle": [{"tool": "create_maintenance_order", "args": {"machine_id": m, "kind": "inspection",
                                                                     "priority": prio, "note": "unusual vibration"}},
                       {"answer": "Opened {steps[0][id]}."}]}


def close_order(p: Plant, rng: random.Random) -> Task | None:
    m = rng.choice(_mids(p))
    over = {"maintenance_orders": {"MO-1": {"id": "MO-1", "machine_id": m, "kind": "repair", "priority": "high",
                                            "note": "coolant leak", "status": "open", "resolution": None}},
            "next_mo": 2}
    return {"category": "maintenance", "overrides": over,
            "instruction": f"The coolant leak on {m} is fixed. Close its open maintenance order with the resolution "
                           "'replaced seal'.", "tools": ["list_maintenance_orders", "close_maintenance_order"],
            "checker": [{"path": "maintenance_orders.MO-1.status", "eq": "closed"},
                        {"path": "maintenance_orders.MO-1.resolution", "ne": None}],
            "oracle": [{"tool": "list_maintenance_orders", "args": {"machine_id": m, "status": "open"}},
                       {"tool": "close_maintenance_order", "args": {"order_id": "$steps[0].0.id",
                                                                    "resolution": "replaced seal"}},
                       {"answer": "Closed MO-1."}]}


def triage_lowest(p: Plant, rng: random.Random) -> Task | None:
    ruls = _ruls(p)
    live = {m: r for m, r in ruls.items() if p.state["machines"][m]["state"] != "down"}
    order = sorted(live, key=lambda m: live[m])
    if len(order) < 2 or live[order[1]] - live[order[0]] < 3:
        return None
    worst = order[0]
    return {"category": "triage", "tags": ["multi-step"],
            "instruction": "Find the machine (not counting machines that are down) with the lowest predicted "
                           "remaining useful life and open an urgent repair order for it. Tell me which machine.",
            "tools": MO_TOOLS,
            "checker": [{"count": "maintenance_orders", "where": {"machine_id": worst, "kind": "repair",
                                                                  "priority": "urgent"}, "eq": 1},
                        {"count": "maintenance_orders", "where": {"machine_id": {"ne": worst}}, "eq": 0},
                        {"answer_contains": worst}],
            "oracle": [*({"tool": "predict_rul", "args": {"machine_id": m}} for m in order),
                       {"tool": "create_maintenance_order", "args": {"machine_id": worst, "kind": "repair",
                                                                     "priority": "urgent"}},
                       {"answer": f"{worst} has the lowest predicted RUL; opened {{steps[{len(order)}][id]}}."}]}


def triage_threshold(p: Plant, rng: random.Random) -> Task | None:
    ruls = _ruls(p)
    t = _gap_threshold(list(ruls.values()), 20, 60)
    if t is None:
        return None
    low = [m for m, r in ruls.items() if r < t]
    if not 1 <= len(low) <= 4:
        return None
    return {"category": "triage", "tags": ["multi-step"],
            "instruction": f"Open a high-priority inspection order for every machine whose predicted remaining "
                           f"useful life is below {t:.0f} cycles, and for no other machine.",
            "tools": MO_TOOLS,
            "checker": [*({"count": "maintenance_orders", "where": {"machine_id": m, "kind": "inspection",
                                                                    "priority": {"in": ["high", "urgent"]}}, "ge": 1}
                          for m in low),
                        {"count": "maintenance_orders", "where": {"machine_id": {"not_in": low}}, "eq": 0}],
            "oracle": [*({"tool": "predict_rul", "args": {"machine_id": m}} for m in _mids(p)),
                       *({"tool": "create_maintenance_order", "args": {"machine_id": m, "kind": "inspection",
                                                                       "priority": "high"}} for m in low),
                       {"answer": f"Inspection orders opened for {', '.join(low)}."}]}


def take_down(p: Plant, rng: random.Random) -> Task | None:
    ruls = _ruls(p)
    live = sorted((r, m) for m, r in ruls.items() if p.state["machines"][m]["state"] != "down")
    if not live or live[0][0] >= 25 or (len(live) > 1 and live[1][0] - live[0][0] < 3):
        return None
    m = live[0][1]
    return {"category": "triage", "tags": ["multi-step"],
            "instruction": "Safety rule: a machine with predicted remaining useful life under 25 cycles must be "
                           "taken down and get an urgent replacement order. Apply it to the machine with the "
                           "lowest predicted life that is not already down.",
            "tools": [*MO_TOOLS, "set_machine_state"],
            "checker": [{"path": f"machines.{m}.state", "eq": "down"},
                        {"count": "maintenance_orders", "where": {"machine_id": m, "kind": "replacement",
                                                                  "priority": "urgent"}, "eq": 1},
                        {"count": "machines", "where": {"state": "down", "id": {"ne": m}},
                         "eq": sum(1 for x in p.state["machines"].values() if x["state"] == "down")}],
            "oracle": [*({"tool": "predict_rul", "args": {"machine_id": x}} for _, x in live),
                       {"tool": "set_machine_state", "args": {"machine_id": m, "state": "down"}},
                       {"tool": "create_maintenance_order", "args": {"machine_id": m, "kind": "replacement",
                                                                     "priority": "urgent"}},
                       {"answer": f"{m} is down with an urgent replacement order."}]}


def _runnable_jobs(p: Plant) -> list[str]:
    down = {m for m, x in p.state["machines"].items() if x["state"] == "down"}
    return [j for j, x in p.state["jobs"].items() if not any(op["machine_id"] in down for op in x["operations"])]


def _opt_makespan(p: Plant, jobs: list[str]) -> int:
    mids: list[str] = []
    for j in jobs:
        for op in p.state["jobs"][j]["operations"]:
            if op["machine_id"] not in mids:
                mids.append(op["machine_id"])
    inst = jobshop.Instance("x", [[op["duration_h"] for op in p.state["jobs"][j]["operations"]] for j in jobs],
                            [[mids.index(op["machine_id"]) for op in p.state["jobs"][j]["operations"]] for j in jobs])
    s = jobshop.solve(inst, 20.0, 2)
    assert s.status == "optimal", "generator needs proven optima"
    return s.makespan


def schedule_some(p: Plant, rng: random.Random) -> Task | None:
    runnable = _runnable_jobs(p)
    if len(runnable) < 2:
        return None
    jobs = sorted(rng.sample(runnable, 2), key=lambda j: int(j[1:]))
    opt = _opt_makespan(p, jobs)
    return {"category": "scheduling", "instruction": f"Schedule jobs {jobs[0]} and {jobs[1]} with the shortest "
            "makespan and tell me the makespan in hours.", "tools": ["list_jobs", "schedule_jobs"],
            "checker": [*({"path": f"jobs.{j}.status", "eq": "scheduled"} for j in jobs),
                        {"path": "schedule.makespan_h", "le": opt}, {"answer_number": opt}],
            "oracle": [{"tool": "schedule_jobs", "args": {"job_ids": jobs, "time_limit_s": 5.0}},
                       {"answer": "Makespan {steps[0][makespan_h]} h."}]}


def schedule_runnable(p: Plant, rng: random.Random) -> Task | None:
    runnable = sorted(_runnable_jobs(p), key=lambda j: int(j[1:]))
    if len(runnable) == len(p.state["jobs"]) or not runnable:
        return None
    skipped = sorted(set(p.state["jobs"]) - set(runnable))
    return {"category": "scheduling", "tags": ["multi-step"],
            "instruction": "Schedule every queued job that can run now: leave out jobs that need a machine that is "
                           "down. Tell me which jobs you left out.",
            "tools": ["list_machines", "list_jobs", "schedule_jobs"],
            "checker": [*({"path": f"jobs.{j}.status", "eq": "scheduled"} for j in runnable),
                        *({"answer_contains": j} for j in skipped),
                        {"count": "jobs", "where": {"status": "scheduled"}, "eq": len(runnable)}],
            "oracle": [{"tool": "list_machines", "args": {"state": "down"}}, {"tool": "list_jobs", "args": {}},
                       {"tool": "schedule_jobs", "args": {"job_ids": runnable, "time_limit_s": 5.0}},
                       {"answer": f"Left out {', '.join(skipped)}."}]}


def repair_then_schedule(p: Plant, rng: random.Random) -> Task | None:
    down = [m for m, x in p.state["machines"].items() if x["state"] == "down"]
    if not down:
        return None
    m = down[0]
    jobs = sorted((j for j, x in p.state["jobs"].items() if any(op["machine_id"] == m for op in x["operations"])),
                  key=lambda j: int(j[1:]))
    if not jobs:
        return None
    return {"category": "scheduling", "tags": ["multi-step"],
            "instruction": f"Machine {m} has been repaired. Bring it back to running, then schedule every job that "
                           f"uses {m}.", "tools": ["list_jobs", "set_machine_state", "schedule_jobs"],
            "checker": [{"path": f"machines.{m}.state", "eq": "running"},
                        *({"path": f"jobs.{j}.status", "eq": "scheduled"} for j in jobs)],
            "oracle": [{"tool": "set_machine_state", "args": {"machine_id": m, "state": "running"}},
                       {"tool": "schedule_jobs", "args": {"job_ids": jobs, "time_limit_s": 5.0}},
                       {"answer": f"{m} running; scheduled {', '.join(jobs)}."}]}


def _robot_for(p: Plant, part: str, to: str) -> str | None:
    from blacksoil.factories.manufacturing.tools import _hops

    loc = p.state["parts"][part]["location"]
    for r in sorted(p.state["robots"]):
        x = p.state["robots"][r]
        if x["battery"] - BATTERY_PER_HOP * (_hops(x["location"], loc) + _hops(loc, to)) >= BATTERY_RESERVE:
            return r
    return None


def move_part(p: Plant, rng: random.Random) -> Task | None:
    part, to = rng.choice(sorted(p.state["parts"])), rng.choice(["S1", "S2", "S3", "S4", "shipping"])
    robot = _robot_for(p, part, to)
    if robot is None:
        return None
    return {"category": "robots", "instruction": f"Bring part {part} to station {to} with any robot that can make "
            "the trip.", "tools": ["list_robots", "list_parts", "dispatch_robot"],
            "checker": [{"path": f"parts.{part}.location", "eq": to}],
            "oracle": [{"tool": "dispatch_robot", "args": {"robot_id": robot, "part_id": part, "to_station": to}},
                       {"answer": f"{part} is at {to}."}]}


def charge_and_move(p: Plant, rng: random.Random) -> Task | None:
    robot, part = rng.choice(sorted(p.state["robots"])), rng.choice(sorted(p.state["parts"]))
    to = rng.choice(["S3", "S4", "shipping"])
    return {"category": "robots", "tags": ["multi-step"], "overrides": {"robots": {robot: {"battery": 12}}},
            "instruction": f"Use robot {robot} to carry part {part} to {to}. Its battery is low, so charge it first.",
            "tools": ["list_robots", "charge_robot", "dispatch_robot"],
            "checker": [{"path": f"parts.{part}.location", "eq": to}, {"path": f"robots.{robot}.location", "eq": to},
                        {"path": f"robots.{robot}.battery", "ge": 10}],
            "oracle": [{"tool": "charge_robot", "args": {"robot_id": robot}},
                       {"tool": "dispatch_robot", "args": {"robot_id": robot, "part_id": part, "to_station": to}},
                       {"answer": f"{robot} charged and delivered {part} to {to}."}]}


def order_question(p: Plant, rng: random.Random) -> Task | None:
    o = rng.choice(sorted(p.state["orders"]))
    x = p.state["orders"][o]
    return {"category": "orders", "instruction": f"Which customer placed order {o}, and how many units?",
            "tools": ["list_orders", "get_order"],
            "checker": [{"answer_contains": x["customer"]}, {"answer_number": x["quantity"]}],
            "oracle": [{"tool": "get_order", "args": {"order_id": o}},
                       {"answer": "{steps[0][customer]} ordered {steps[0][quantity]} units."}]}


def rush_order(p: Plant, rng: random.Random) -> Task | None:
    o = rng.choice(sorted(p.state["orders"]))
    jobs = sorted((j for j, x in p.state["jobs"].items() if x["order_id"] == o), key=lambda j: int(j[1:]))
    runnable = set(_runnable_jobs(p))
    if not jobs or not set(jobs) <= runnable:
        return None
    return {"category": "orders", "tags": ["multi-step"],
            "instruction": f"Customer escalation: set order {o} to rush priority and schedule all of its jobs.",
            "tools": ["get_order", "set_order_priority", "list_jobs", "schedule_jobs"],
            "checker": [{"path": f"orders.{o}.priority", "eq": "rush"},
                        *({"path": f"jobs.{j}.status", "eq": "scheduled"} for j in jobs)],
            "oracle": [{"tool": "set_order_priority", "args": {"order_id": o, "priority": "rush"}},
                       {"tool": "get_order", "args": {"order_id": o}},
                       {"tool": "schedule_jobs", "args": {"job_ids": "$steps[1].job_ids", "time_limit_s": 5.0}},
                       {"answer": f"{o} is rush; its jobs are scheduled."}]}


TEMPLATES: tuple[Callable[[Plant, random.Random], Task | None], ...] = (
    machine_state, count_state, sensor_reading, rul_question, open_inspection, close_order, triage_lowest,
    triage_threshold, take_down, schedule_some, schedule_runnable, repair_then_schedule, move_part, charge_and_move,
    order_question, rush_order,
)
PER_TEMPLATE = 5


def manufacturing_tasks(settings: EnvSettings, per_template: int = PER_TEMPLATE, first_seed: int = 0,
                        seeds: int = 60, split: Callable[[int], str] = _split, id_prefix: str = "mfg") -> list[Task]:
    """`per_template` tasks per template over seeded plants; tasks whose template does not apply to a seed are skipped.

    The defaults write the shipped suite; other seeds give fresh instances (practice tasks for learning).
    `settings`: the RUL model the RUL templates predict with (the same the plant tools use when the task runs).
    """
    tasks: list[Task] = []
    plants: dict[int, Plant] = {}
    for tpl in TEMPLATES:
        made, seed = 0, first_seed
        while made < per_template and seed < first_seed + seeds:
            plant = plants.setdefault(seed, Plant.create(seed, home=settings.home, config=settings.manufacturing))
            rng = random.Random(f"{tpl.__name__}-{seed}")
            spec = tpl(Plant(plant.snapshot(), home=settings.home, config=settings.manufacturing), rng)
            if spec is not None:
                over = spec.pop("overrides", {})
                if over:
                    Plant.create(seed, over)  # the overrides must apply cleanly (state only: no settings)
                tasks.append({"id": f"{id_prefix}-{tpl.__name__.replace('_', '-')}-{made + 1}", "split": split(made),
                              "category": spec.pop("category"), "tags": spec.pop("tags", ["single-step"]),
                              "instruction": spec.pop("instruction"),
                              "initial": {"seed": seed, "overrides": over}, **spec})
                made += 1
            seed += 1
    return tasks


def _random_instance(rng: random.Random, jobs: int, machines: int) -> jobshop.Instance:
    ms = [rng.sample(range(machines), machines) for _ in range(jobs)]
    ds = [[rng.randint(1, 9) for _ in range(machines)] for _ in range(jobs)]
    return jobshop.Instance(f"rand{jobs}x{machines}", ds, ms)


def jobshop_tasks() -> list[Task]:
    """Solver tasks (all tools) and heuristic tasks (dispatch rules only), classic and seeded random instances."""
    tasks: list[Task] = []
    rng = random.Random(7)
    specs: list[tuple[str, Any, int]] = []
    for name in ("ft06", "la01", "la02", "la03", "la04", "la05"):
        best = jobshop.classic(name).best_known
        assert best is not None
        specs.append((name, name, best))
    for i in range(12):
        inst = _random_instance(rng, rng.randint(3, 6), rng.randint(3, 5))
        s = jobshop.solve(inst, 20.0, 2)
        assert s.status == "optimal"
        specs.append((f"r{i + 1}-{inst.name}", {"name": inst.name, "durations": inst.durations,
                                                "machines": inst.machines, "best_known": s.makespan}, s.makespan))
    for i, (label, instance, best) in enumerate(specs):
        inst = jobshop.classic(instance) if isinstance(instance, str) else jobshop.Instance(
            instance["name"], instance["durations"], instance["machines"], best)
        heuristic = i % 3 == 2
        base = {"id": f"js-{'heuristic' if heuristic else 'solve'}-{label}", "split": _split(i),
                "tags": ["multi-step"], "initial": {"seed": 0, "overrides": {"instance": instance}}}
        if heuristic:
            rule = min(jobshop.RULES, key=lambda r: (jobshop.dispatch(inst, r).makespan, r))
            ratio = jobshop.dispatch(inst, rule).makespan / best
            bar = round(ratio + 0.005, 3)
            tasks.append({**base, "category": "dispatch",
                          "instruction": f"Plan this job shop with dispatching rules (no solver) and submit a "
                                         f"schedule whose makespan is at most {bar:.3f} times the best known "
                                         f"({best}).",
                          "tools": ["get_instance", "dispatch_schedule", "submit_schedule"],
                          "checker": [{"makespan_quality": bar}],
                          "oracle": [{"tool": "dispatch_schedule", "args": {"rule": rule}},
                                     {"tool": "submit_schedule", "args": {"starts": "$steps[0].starts"}},
                                     {"answer": "Submitted makespan {steps[1][makespan]}."}]})
        else:
            bar = 1.0 if not isinstance(instance, str) else 1.05
            tasks.append({**base, "category": "solver",
                          "instruction": f"Find a schedule for this job shop with makespan within {bar:.2f} times "
                                         f"the best known ({best}) and submit it.",
                          "tools": ["get_instance", "solve_schedule", "dispatch_schedule", "submit_schedule"],
                          "checker": [{"makespan_quality": bar}],
                          "oracle": [{"tool": "solve_schedule", "args": {"time_limit_s": 5.0}},
                                     {"tool": "submit_schedule", "args": {"starts": "$steps[0].starts"}},
                                     {"answer": "Submitted makespan {steps[1][makespan]}."}]})
    return tasks


def write(path: Path, suite: str, domain: str, description: str, tasks: list[Task]) -> None:
    """Write one suite file with a do-not-edit header."""
    header = f"# Generated by {__name__}; do not edit by hand.\n"
    body = yaml.safe_dump({"suite": suite, "domain": domain, "description": description, "tasks": tasks},
                          sort_keys=False, width=120, allow_unicode=True)
    path.write_text(header + body)


def main() -> None:
    """Regenerate both suite files (a process entry point: it loads the settings the RUL model is cached under)."""
    from blacksoil.config import load_settings

    settings = EnvSettings.from_settings(load_settings())
    write(HERE / "manufacturing.yaml", "manufacturing", "manufacturing",
          "Plant operator tasks over a seeded plant backed by C-MAPSS FD001 engines.", manufacturing_tasks(settings))
    write(HERE / "jobshop_quality.yaml", "jobshop-quality", "jobshop",
          "Agent-produced job-shop schedules scored as makespan ÷ best known.", jobshop_tasks())


if __name__ == "__main__":
    main()
