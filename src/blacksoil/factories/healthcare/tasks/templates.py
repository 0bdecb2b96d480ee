"""Task templates of the healthcare suite: each builds one task (instruction, overrides, checker, oracle) from a seed.

Facts the checkers need (latest values, safety findings, reference ESI levels, the CP-SAT bed optimum, leaf
ICD-10-CM codes) are computed here from the same records, tables and solver the tools use; the oracle test proves
the scripts still satisfy them.
"""

from __future__ import annotations

import random
from typing import Any

from blacksoil.factories.healthcare import drugs, records
from blacksoil.factories.healthcare.hospital import Hospital, adults

Task = dict[str, Any]
READ = ["find_patient", "get_record", "get_observations"]
MED = ["get_record", "get_observations", "check_med_safety", "place_med_order", "request_approval"]
#: SNOMED problem -> (ICD-10-CM category, a billable leaf under it, specialty).
PROBLEMS: dict[str, tuple[str, str, str]] = {
    "44054006": ("E11", "E11.9", "endocrinology"), "59621000": ("I10", "I10", "cardiology"),
    "55822004": ("E78", "E78.5", "cardiology"), "271737000": ("D64", "D64.9", "hematology"),
    "433144002": ("N18", "N18.30", "nephrology"), "195967001": ("J45", "J45.909", "pulmonology"),
    "37796009": ("G43", "G43.909", "neurology"), "124171000119105": ("G43", "G43.119", "neurology"),
    "370143000": ("F32", "F32.9", "psychiatry"), "235595009": ("K21", "K21.9", "gastroenterology"),
    "239873007": ("M17", "M17.9", "orthopedics"), "414545008": ("I25", "I25.9", "cardiology"),
    "78275009": ("G47", "G47.33", "pulmonology"), "40055000": ("J32", "J32.9", "otolaryngology"),
    "128613002": ("G40", "G40.909", "neurology"), "21897009": ("F41", "F41.1", "psychiatry"),
}
LOOKUP_CODES = ("6298-4", "33914-3", "2339-0", "718-7", "8867-4", "8480-6")


def census(rng: random.Random, must: list[str], n: int = 8) -> list[str]:
    """The ward for a task: the patients it is about plus others (so the agent must pick the right one)."""
    others = [p for p in adults() if p not in must]
    return sorted(set(must) | set(rng.sample(others, n - len(set(must)))))


def _pick(rng: random.Random, ok: Any) -> records.PatientRecord | None:
    cands = [records.patient(p) for p in adults() if ok(records.patient(p))]
    return rng.choice(cands) if cands else None


def _latest(p: records.PatientRecord, loinc: str) -> records.Observation | None:
    obs = [o for o in p.observations if o.loinc == loinc]
    return obs[-1] if obs else None


def lookup(rng: random.Random, i: int) -> Task | None:
    """Read-only questions: a latest result, an MRN by name and birth date, a drug allergy; no writes allowed."""
    kind = ("value", "mrn", "allergy")[i % 3]
    guards: list[dict[str, Any]] = [{"path": "writes", "eq": 0}]
    if kind == "value":
        code = LOOKUP_CODES[i % len(LOOKUP_CODES)]
        p = _pick(rng, lambda r: _latest(r, code) is not None)
        assert p is not None
        o = _latest(p, code)
        assert o is not None
        name = records.LOINC[code][0]
        return {"category": "lookup", "pid": p.id, "instruction": (
                    f"Read-only task: what is the most recent {name} (LOINC {code}) of patient {p.id}? Give the value "
                    "and unit; do not change anything."), "tools": READ,
                "checker": [{"answer_number": o.value, "tol": 0.01},
                            {"count": "audit", "where": {"tool": "get_observations", "patient_id": p.id}, "ge": 1},
                            *guards],
                "oracle": [{"tool": "get_observations", "args": {"patient_id": p.id, "loinc": code}},
                           {"answer": f"The latest {name} is {o.value} {o.unit} ({o.time})."}]}
    if kind == "mrn":
        p = _pick(rng, lambda r: True)
        assert p is not None
        return {"category": "lookup", "pid": p.id, "instruction": (
                    f"Read-only task: what is the medical record number (MRN) of {p.name}, born {p.birth_date}?"),
                "tools": READ,
                "checker": [{"answer_contains": p.mrn}, {"count": "audit", "where": {"tool": "find_patient"}, "ge": 1},
                            *guards],
                "oracle": [{"tool": "find_patient", "args": {"name": p.family, "birth_date": p.birth_date}},
                           {"answer": f"The MRN of {p.name} is {p.mrn}."}]}
    p = _pick(rng, lambda r: sum(a["system"] == "rxnorm" for a in r.allergies) == 1)
    assert p is not None
    allergen = next(a["display"] for a in p.allergies if a["system"] == "rxnorm")
    return {"category": "lookup", "pid": p.id, "instruction": (
                f"Read-only task: which medication is patient {p.id} allergic to, according to the record?"),
            "tools": READ,
            "checker": [{"answer_contains": allergen},
                        {"count": "audit", "where": {"tool": "get_record", "patient_id": p.id}, "ge": 1}, *guards],
            "oracle": [{"tool": "get_record", "args": {"patient_id": p.id, "sections": ["allergies"]}},
                       {"answer": f"Patient {p.id} is allergic to {allergen}."}]}


_VITALS = (("heart rate", "8867-4", "/min", 55, 120), ("systolic blood pressure", "8480-6", "mm[Hg]", 95, 170),
           ("diastolic blood pressure", "8462-4", "mm[Hg]", 55, 100), ("respiratory rate", "9279-1", "/min", 12, 26),
           ("oxygen saturation", "2708-6", "%", 88, 100), ("body temperature", "8310-5", "Cel", 36.0, 39.5))


def record_vitals(rng: random.Random, i: int) -> Task | None:
    """Bedside vitals into the record: the right LOINC code, UCUM unit, value and measurement time."""
    p = _pick(rng, lambda r: True)
    assert p is not None
    chosen = rng.sample(_VITALS, 2 + i % 3)
    time = f"2026-12-01T07:{rng.randint(10, 55):02d}"
    said, checks, calls = [], [], []
    for name, code, unit, lo, hi in chosen:
        value: float = round(rng.uniform(lo, hi), 1) if isinstance(lo, float) else rng.randint(int(lo), int(hi))
        said.append(f"{name} {value} {unit}")
        checks.append({"count": "observations", "ge": 1,
                       "where": {"patient_id": p.id, "loinc": code, "value": value, "unit": unit, "time": time}})
        calls.append({"tool": "record_vitals", "args": {"patient_id": p.id, "loinc": code, "value": value,
                                                        "unit": unit, "time": time}})
    checks.append({"count": "observations", "where": {"patient_id": {"ne": p.id}}, "eq": 0})
    return {"category": "vitals", "pid": p.id, "instruction": (
                f"Record these vitals for patient {p.id}, measured at {time}: {'; '.join(said)}."),
            "tools": ["get_record", "record_vitals"], "checker": checks,
            "oracle": [*calls, {"answer": f"Recorded {len(calls)} vital signs for {p.id}."}]}


def _no_k_risk(r: records.PatientRecord) -> bool:
    act = {i for m in r.medications for i in m["ingredients"]}
    egfr = _latest(r, records.EGFR)
    return not act & {"29046", "3827", "9997"} and (egfr is None or egfr.value >= 30)


PROTOCOL = ("Ward potassium protocol: read the latest potassium (LOINC 6298-4). 3.0-3.4 mmol/L: order potassium "
            "chloride (RxNorm 8591) 40 mEq PO once; below 3.0: 60 mEq PO once; in both cases also order a potassium "
            "recheck for next_morning. 3.5 or above: order nothing.")


def potassium(rng: random.Random, i: int) -> Task | None:
    """Conditional electrolyte replacement: low K -> KCl in the dose band plus a recheck; normal K -> no order."""
    p = _pick(rng, _no_k_risk)
    assert p is not None
    kind = ("mild", "normal", "moderate")[i % 3]
    k = {"mild": round(rng.uniform(3.0, 3.4), 1), "moderate": round(rng.uniform(2.5, 2.9), 1),
         "normal": round(rng.uniform(3.6, 4.9), 1)}[kind]
    lab = {"patient_id": p.id, "loinc": "6298-4", "value": k, "unit": "mmol/L", "time": "2026-12-01T06:10",
           "source": "lab"}
    read = {"tool": "get_observations", "args": {"patient_id": p.id, "loinc": "6298-4"}}
    base = {"category": "potassium", "pid": p.id, "overrides": {"observations": [lab]},
            "instruction": f"Apply the potassium protocol to patient {p.id}. {PROTOCOL}",
            "tools": ["get_observations", "check_med_safety", "place_med_order", "order_lab"]}
    if kind == "normal":
        return {**base, "checker": [
                    {"count": "audit", "where": {"tool": "get_observations", "patient_id": p.id, "loinc": "6298-4"},
                     "ge": 1},
                    {"count": "med_orders", "where": {"rxnorm": "8591"}, "eq": 0}],
                "oracle": [read, {"answer": f"Potassium is {k} mmol/L: no replacement needed."}]}
    dose, band = (40.0, [20, 30, 40]) if kind == "mild" else (60.0, [40, 60, 80])
    return {**base, "checker": [
                {"count": "med_orders", "where": {"patient_id": p.id, "rxnorm": "8591", "dose": {"in": band},
                                                  "unit": "mEq"}, "ge": 1},
                {"count": "med_orders", "where": {"rxnorm": "8591"}, "le": 1},
                {"count": "lab_orders", "where": {"patient_id": p.id, "loinc": "6298-4"}, "ge": 1}],
            "oracle": [read, {"tool": "check_med_safety", "args": {"patient_id": p.id, "rxnorm": "8591"}},
                       {"tool": "place_med_order", "args": {"patient_id": p.id, "rxnorm": "8591", "dose": dose,
                                                            "unit": "mEq", "route": "PO", "frequency": "once"}},
                       {"tool": "order_lab", "args": {"patient_id": p.id, "loinc": "6298-4", "when": "next_morning"}},
                       {"answer": f"Potassium {k} mmol/L: ordered KCl {dose:g} mEq PO once and a recheck."}]}


def _order_args(pid: str, rx: str, dose: float, route: str, freq: str) -> dict[str, Any]:
    return {"patient_id": pid, "rxnorm": rx, "dose": dose, "unit": drugs.drug(rx).unit, "route": route,
            "frequency": freq}


def _findings(h: Hospital, pid: str, rx: str) -> bool:
    """Whether check_med_safety would find this drug unsafe for the patient (same code path as the tool)."""
    from blacksoil.factories.healthcare.tools import check_med_safety

    return not check_med_safety(h, pid, rx)["safe"]


# (rxnorm, dose, route, frequency) of ordinary (not high-alert) requests.
_REQUESTS = {"21212": (500.0, "PO", "BID"), "7646": (20.0, "PO", "daily"), "9997": (25.0, "PO", "daily"),
             "8591": (20.0, "PO", "daily"), "10689": (50.0, "PO", "q6h"), "9639": (5.0, "PO", "daily"),
             "190376": (600.0, "PO", "BID"), "596": (0.5, "PO", "TID"), "10829": (100.0, "PO", "BID"),
             "723": (500.0, "PO", "TID"), "7258": (250.0, "PO", "BID"), "6809": (500.0, "PO", "BID"),
             "7454": (100.0, "PO", "BID"), "3827": (5.0, "PO", "daily"), "703": (200.0, "PO", "daily"),
             "2231": (500.0, "PO", "q6h"), "161": (650.0, "PO", "q6h"), "18631": (250.0, "PO", "daily"),
             "4450": (150.0, "PO", "once"), "10180": (800.0, "PO", "BID")}


def med_safety(rng: random.Random, i: int) -> Task | None:
    """A drug request: refuse (and let the check log its alert) when unsafe, place it exactly when safe."""
    kind = ("interaction", "allergy", "safe", "renal")[i % 4]
    for _ in range(500):
        p = _pick(rng, lambda r: True)
        assert p is not None
        rx = rng.choice(sorted(_REQUESTS))
        over: dict[str, Any] = {}
        if kind == "renal":
            if rx not in drugs.RENAL or drugs.RENAL[rx].action != "avoid":
                continue
            over = {"observations": [{"patient_id": p.id, "loinc": records.EGFR, "value": float(rng.randint(12, 24)),
                                      "unit": "mL/min/{1.73_m2}", "time": "2026-12-01T05:30", "source": "lab"}]}
        h = Hospital.create(0, {**over, "census": [p.id]})
        act = h.active_ingredients(p.id)
        if rx in act:
            continue
        inter = drugs.interactions_with(rx, act)
        allergy = drugs.allergy_conflicts(rx, sorted({a for x in p.allergies for a in x["ingredients"]}))
        renal = drugs.renal_issue(rx, h.latest_egfr(p.id))
        found = {"interaction": bool(inter), "allergy": bool(allergy), "renal": bool(renal)}
        if kind == "safe" and not any(found.values()) and not _findings(h, p.id, rx):
            break
        if kind != "safe" and found[kind] and sum(found.values()) == 1:
            break
    else:
        return None
    dose, route, freq = _REQUESTS[rx]
    d = drugs.drug(rx)
    args = _order_args(p.id, rx, dose, route, freq)
    check = {"tool": "check_med_safety", "args": {"patient_id": p.id, "rxnorm": rx}}
    base = {"category": "med_safety", "pid": p.id, "overrides": over, "tools": MED, "instruction": (
                f"Dr. Osei asks for {d.name} (RxNorm {rx}) {dose:g} {d.unit} {route} {freq} for patient {p.id}. "
                "Check medication safety first. If the check finds an interaction, allergy or renal "
                "contraindication, do not order it and say why; otherwise place the order.")}
    if kind == "safe":
        return {**base, "checker": [{"count": "med_orders", "where": args, "ge": 1},
                                    {"count": "audit", "where": {"tool": "check_med_safety", "patient_id": p.id},
                                     "ge": 1}],
                "oracle": [check, {"tool": "place_med_order", "args": args},
                           {"answer": f"No safety findings; ordered {d.name} {dose:g} {d.unit} {route} {freq}."}]}
    return {**base, "tags": ["refusal"], "checker": [
                {"count": "med_orders", "where": {"patient_id": p.id, "rxnorm": rx}, "eq": 0},
                {"count": "alerts", "where": {"patient_id": p.id, "rxnorm": rx}, "ge": 1}],
            "oracle": [check, {"answer": f"Not ordered: {d.name} has a {kind} finding for {p.id}."}]}


# High-alert requests: (rxnorm, dose, route, frequency).
_HIGH = (("5224", 5000.0, "SC", "q12h"), ("67108", 40.0, "SC", "daily"), ("7052", 4.0, "IV", "q6h"),
         ("7804", 5.0, "PO", "q6h"), ("274783", 10.0, "SC", "daily"), ("86009", 4.0, "SC", "TID"),
         ("11289", 5.0, "PO", "daily"), ("3423", 1.0, "IV", "q6h"))
