"""Ward beds: the layout, the clinical placement rules, and the CP-SAT optimum a bed plan is judged against.

Why CP-SAT (as the job shop uses it): placing admissions under isolation, telemetry and same-sex-room rules while
keeping monitored patients near the nurses' station is a small assignment problem with side constraints; the
solver gives the checker an exact optimum, so "within 10% of optimal" means something.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from functools import lru_cache
from typing import Any

from ortools.sat.python import cp_model

# (bed, room, isolation, telemetry, distance from the nurses' station in bays)
_LAYOUT = (
    ("B01", "R1", True, True, 1), ("B02", "R2", True, False, 4),
    ("B03", "R3", False, True, 2), ("B04", "R3", False, True, 2),
    ("B05", "R4", False, True, 3), ("B06", "R4", False, True, 3),
    ("B07", "R5", False, False, 5), ("B08", "R5", False, False, 5),
    ("B09", "R6", False, False, 6), ("B10", "R6", False, False, 6),
)
TELEMETRY_WEIGHT = 3  # a monitored patient's distance counts three times
WASTE_ISOLATION = 4  # cost of putting a patient who needs no isolation in an isolation room
WASTE_TELEMETRY = 2  # cost of a telemetry bed for a patient who needs no monitoring


def default_beds() -> dict[str, dict[str, Any]]:
    """The ward's ten beds, all free."""
    return {b: {"id": b, "room": r, "isolation": iso, "telemetry": tel, "distance": d, "patient_id": None}
            for b, r, iso, tel, d in _LAYOUT}


def cost(bed: dict[str, Any], need: dict[str, Any]) -> int:
    """What placing a patient with these needs in this bed costs (walking distance plus wasted equipment)."""
    c = bed["distance"] * (TELEMETRY_WEIGHT if need.get("telemetry") else 1)
    c += WASTE_ISOLATION if bed["isolation"] and not need.get("isolation") else 0
    c += WASTE_TELEMETRY if bed["telemetry"] and not need.get("telemetry") else 0
    return int(c)


def rule_broken(beds: dict[str, Any], bed_id: str, pid: str, need: dict[str, Any],
                sex_of: Callable[[str], str]) -> str | None:
    """Why this placement breaks a rule (isolation, telemetry, one sex per room, bed taken), or None."""
    bed = beds[bed_id]
    if bed["patient_id"] not in (None, pid):
        return f"bed {bed_id} is occupied"
    if need.get("isolation") and not bed["isolation"]:
        return f"patient {pid} needs an isolation room and bed {bed_id} is not one"
    if need.get("telemetry") and not bed["telemetry"]:
        return f"patient {pid} needs telemetry and bed {bed_id} has none"
    for other in beds.values():
        shared = other["room"] == bed["room"] and other["id"] != bed_id and other["patient_id"] not in (None, pid)
        if shared and sex_of(other["patient_id"]) != sex_of(pid):
            return f"room {bed['room']} already holds a {sex_of(other['patient_id'])} patient"
    return None


def solve(beds: dict[str, Any], admissions: dict[str, Any], sex_of: Callable[[str], str]) -> dict[str, str] | None:
    """The cheapest placement of every admission into free beds (CP-SAT), or None when none is feasible."""
    return _solve_cached(json.dumps(beds, sort_keys=True), json.dumps(admissions, sort_keys=True),
                         json.dumps({p: sex_of(p) for p in _people(beds, admissions)}, sort_keys=True))


def _people(beds: dict[str, Any], admissions: dict[str, Any]) -> list[str]:
    return sorted({*admissions, *(b["patient_id"] for b in beds.values() if b["patient_id"])})


@lru_cache(maxsize=256)
def _solve_cached(beds_json: str, adm_json: str, sex_json: str) -> dict[str, str] | None:
    beds, admissions, sex = json.loads(beds_json), json.loads(adm_json), json.loads(sex_json)
    fixed = {b: v for b, v in beds.items() if v["patient_id"] and v["patient_id"] not in admissions}
    free = {b: {**v, "patient_id": None} for b, v in beds.items() if b not in fixed}
    m = cp_model.CpModel()
    x: dict[tuple[str, str], Any] = {}
    for p, need in admissions.items():
        for b, bed in free.items():
            ok = (bed["isolation"] or not need.get("isolation")) and (bed["telemetry"] or not need.get("telemetry"))
            ok = ok and all(sex[o["patient_id"]] == sex[p] for o in fixed.values() if o["room"] == bed["room"])
            if ok:
                x[p, b] = m.new_bool_var(f"x_{p}_{b}")
        m.add_exactly_one([v for (q, _), v in x.items() if q == p])
    for b in free:
        m.add_at_most_one([v for (_, c), v in x.items() if c == b])
    pats = sorted(admissions)
    for i, p in enumerate(pats):
        for q in pats[i + 1:]:
            if sex[p] == sex[q]:
                continue
            for room in {v["room"] for v in free.values()}:
                in_room = [b for b, v in free.items() if v["room"] == room]
                m.add(sum(x[p, b] for b in in_room if (p, b) in x) + sum(x[q, b] for b in in_room if (q, b) in x)
                      <= 1)
    m.minimize(sum(cost(free[b], admissions[p]) * v for (p, b), v in x.items()))
    solver = cp_model.CpSolver()
    solver.parameters.num_workers = 1
    solver.parameters.max_time_in_seconds = 10.0
    # CP-SAT's own SIGINT handler stays installed after the solve: Ctrl-C then killed `blacksoil up` (exit 130)
    # instead of reaching its clean shutdown.
    solver.parameters.catch_sigint_signal = False
    if solver.solve(m) != cp_model.OPTIMAL:
        return None
    return {p: b for (p, b), v in x.items() if solver.value(v)}


def bed_plan(beds: dict[str, Any], admissions: dict[str, Any], sex_of: Callable[[str], str]) -> dict[str, Any]:
    """The current plan judged: how many admissions are placed, rule breaks, cost, the optimum and cost ÷ optimum."""
    placed = {v["patient_id"]: b for b, v in beds.items() if v["patient_id"] in admissions}
    violations = []
    for p, b in placed.items():
        why = rule_broken(beds, b, p, admissions[p], sex_of)
        if why:
            violations.append(why)
    total = sum(cost(beds[b], admissions[p]) for p, b in placed.items())
    if not admissions:
        return {"required": 0, "assigned": 0, "unassigned": 0, "violation_count": 0, "violations": [],
                "cost": 0, "optimum": 0, "ratio": 1.0}
    initial = {b: {**v, "patient_id": None if v["patient_id"] in admissions else v["patient_id"]}
               for b, v in beds.items()}
    best = solve(initial, admissions, sex_of)
    optimum = sum(cost(beds[b], admissions[p]) for p, b in best.items()) if best else None
    done = len(placed) == len(admissions)
    ratio = round(total / optimum, 3) if done and optimum else (1.0 if done and optimum == 0 else 99.0)
    return {"required": len(admissions), "assigned": len(placed), "unassigned": len(admissions) - len(placed),
            "violation_count": len(violations), "violations": violations, "cost": total, "optimum": optimum,
            "ratio": ratio}
