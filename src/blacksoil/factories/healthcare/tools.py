"""The clinician's record and order tools: typed functions taking the Hospital first, exposed as ToolSpecs.

Every call is written to the hospital's audit log (reads too: PHI access is what a privacy review asks about), and
every bad argument raises an error that names the value and the fix. Ward logistics live in ward_tools.py.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, Literal

import simple_icd_10_cm as icd

from blacksoil.errors import NotFoundError, UserError

from . import drugs, records
from .hospital import SPECIALTIES, Hospital

Section = Literal["demographics", "problems", "medications", "allergies"]
Unit = Literal["mg", "mEq", "units"]
Route = Literal["PO", "IV", "SC"]
Frequency = Literal["once", "daily", "BID", "TID", "q6h", "q8h", "q12h", "PRN"]
When = Literal["now", "next_morning"]
_PLAUSIBLE = {"8867-4": (20, 250), "8480-6": (40, 260), "8462-4": (20, 160), "9279-1": (4, 60),
              "2708-6": (50, 100), "8310-5": (30, 43), "29463-7": (1, 400), "72514-3": (0, 10)}


def find_patient(h: Hospital, name: str = "", mrn: str = "", birth_date: str = "") -> list[dict[str, Any]]:
    """Find patients on this ward by name (part of it), MRN and/or birth date (YYYY-MM-DD).

    Args:
        name: full or partial name, e.g. Hammes
        mrn: medical record number
        birth_date: YYYY-MM-DD
    """
    if not (name or mrn or birth_date):
        raise UserError("find_patient needs at least one of name, mrn or birth_date")
    out = []
    for pid in h.state["census"]:
        p = records.patient(pid)
        if ((not name or name.lower() in p.name.lower()) and (not mrn or mrn == p.mrn)
                and (not birth_date or birth_date == p.birth_date)):
            out.append(p.demographics())
    h.audit("find_patient", None, matches=[p["patient_id"] for p in out])
    return out


def get_record(h: Hospital, patient_id: str, sections: list[Section]) -> dict[str, Any]:
    """Read parts of a patient's record: demographics, active problems, active medications, allergies.

    Args:
        patient_id: patient id such as P017
        sections: which parts, e.g. ["medications", "allergies"]
    """
    p = h.patient(patient_id)
    if not sections:
        raise UserError("sections is empty; ask for demographics, problems, medications and/or allergies")
    out: dict[str, Any] = {"patient_id": patient_id}
    if "demographics" in sections:
        out["demographics"] = p.demographics()
    if "problems" in sections:
        out["problems"] = [dict(c) for c in p.conditions]
    if "medications" in sections:
        added = [{"rxnorm": r, "display": drugs.drug(r).name, "ingredients": [r]}
                 for r in h.state["added_medications"].get(patient_id, [])]
        out["medications"] = [dict(m) for m in p.medications] + added
        out["medications"] += [{"rxnorm": o["rxnorm"], "display": f"{o['drug']} (ordered {o['time']})",
                                 "ingredients": [o["rxnorm"]]} for o in h.state["med_orders"]
                                if o["patient_id"] == patient_id]
    if "allergies" in sections:
        out["allergies"] = [dict(a) for a in p.allergies]
    h.audit("get_record", patient_id, sections=sorted(set(sections)))
    return out


def get_observations(h: Hospital, patient_id: str, loinc: str, since: str = "") -> dict[str, Any]:
    """A patient's results for one LOINC code (vital sign or lab), newest first, at most 10.

    Args:
        patient_id: patient id such as P017
        loinc: LOINC code, e.g. 6298-4 potassium, 33914-3 eGFR, 8867-4 heart rate
        since: only results at or after this date or time (YYYY-MM-DD or YYYY-MM-DDTHH:MM); omit for all
    """
    h.patient(patient_id)
    if loinc not in records.LOINC:
        raise NotFoundError(f"loinc={loinc!r} is not a code this record system keeps; known: "
                            f"{', '.join(records.LOINC)}")
    results = [o for o in h.observations(patient_id, loinc) if str(o["time"]) >= since][::-1][:10]
    h.audit("get_observations", patient_id, loinc=loinc)
    return {"patient_id": patient_id, "loinc": loinc, "name": records.LOINC[loinc][0],
            "results": [{k: o[k] for k in ("time", "value", "unit")} for o in results]}


def record_vitals(h: Hospital, patient_id: str, loinc: str, value: float, unit: str, time: str) -> dict[str, Any]:
    """Record one vital sign measured at the bedside.

    Args:
        patient_id: patient id such as P017
        loinc: 8867-4 heart rate, 8480-6 systolic BP, 8462-4 diastolic BP, 9279-1 respiratory rate, 2708-6 SpO2,
            8310-5 temperature, 29463-7 weight, 72514-3 pain score
        value: the measurement
        unit: UCUM unit: /min, mm[Hg], %, Cel, kg or {score}
        time: when it was measured, YYYY-MM-DDTHH:MM (not in the future)
    """
    h.patient(patient_id)
    if loinc not in records.VITALS:
        raise UserError(f"loinc={loinc!r} is not a vital sign; use one of {', '.join(records.VITALS)}", param="loinc")
    want = records.LOINC[loinc][1]
    if unit != want:
        raise UserError(f"unit={unit!r} is wrong for {records.LOINC[loinc][0]} ({loinc}); use {want!r}", param="unit")
    lo, hi = _PLAUSIBLE[loinc]
    if not lo <= value <= hi:
        raise UserError(f"value={value} is not a plausible {records.LOINC[loinc][0]} ({lo}..{hi} {want})")
    try:
        when = dt.datetime.strptime(time, "%Y-%m-%dT%H:%M").strftime("%Y-%m-%dT%H:%M")
    except ValueError:
        raise UserError(f"time={time!r} must be YYYY-MM-DDTHH:MM, e.g. 2026-12-01T08:30", param="time") from None
    if when > h.state["clock"]:
        raise UserError(f"time={time!r} is in the future; the clock says {h.state['clock']}", param="time")
    obs = {"patient_id": patient_id, "loinc": loinc, "value": value, "unit": unit, "time": when,
           "source": "recorded"}
    h.state["observations"].append(obs)
    h.audit("record_vitals", patient_id, loinc=loinc)
    return obs


def check_med_safety(h: Hospital, patient_id: str, rxnorm: str) -> dict[str, Any]:
    """Check a drug for this patient before ordering: interactions, allergies, renal dosing (latest eGFR).

    Args:
        patient_id: patient id such as P017
        rxnorm: RxNorm ingredient code, e.g. 8591 potassium chloride
    """
    p = h.patient(patient_id)
    d = drugs.drug(rxnorm)
    inter = [{"with_rxnorm": i.b if i.a == rxnorm else i.a, "with_drug": drugs.drug(i.b if i.a == rxnorm else i.a).name,
              "severity": i.severity, "effect": i.effect, "source": i.source}
             for i in drugs.interactions_with(rxnorm, h.active_ingredients(patient_id))]
    allergens = sorted({i for a in p.allergies for i in a["ingredients"]})
    allergy = [{"allergen_rxnorm": a, "allergen": drugs.drug(a).name}
               for a in drugs.allergy_conflicts(rxnorm, allergens)]
    renal = drugs.renal_issue(rxnorm, h.latest_egfr(patient_id))
    safe = not inter and not allergy and not (renal and renal["action"] == "avoid")
    out = {"patient_id": patient_id, "rxnorm": rxnorm, "drug": d.name, "high_alert": d.high_alert,
           "interactions": inter, "allergies": allergy, "renal": renal, "safe": safe}
    h.audit("check_med_safety", patient_id, rxnorm=rxnorm, safe=safe)
    if not safe:
        kinds = [k for k, v in (("interaction", inter), ("allergy", allergy), ("renal", renal)) if v]
        h.state["alerts"].append({"patient_id": patient_id, "rxnorm": rxnorm, "drug": d.name, "kinds": kinds,
                                  "time": h.state["clock"]})
    return out


def _approval_for(h: Hospital, patient_id: str, rxnorm: str, dose: float) -> str | None:
    for a in h.state["approvals"].values():
        if a["patient_id"] == patient_id and a["rxnorm"] == rxnorm and float(a["dose"]) == float(dose):
            return str(a["id"])
    return None


def place_med_order(h: Hospital, patient_id: str, rxnorm: str, dose: float, unit: Unit, route: Route,
                    frequency: Frequency) -> dict[str, Any]:
    """Order a medication. High-alert drugs (opioids, anticoagulants, insulin) need a recorded approval.

    Args:
        patient_id: patient id such as P017
        rxnorm: RxNorm ingredient code, e.g. 8591 potassium chloride
        dose: amount per administration
        unit: mg, mEq or units (the drug's own unit)
        route: PO, IV or SC
        frequency: once, daily, BID, TID, q6h, q8h, q12h or PRN
    """
    h.patient(patient_id)
    d = drugs.drug(rxnorm)
    if unit != d.unit:
        raise UserError(f"unit={unit!r} is wrong for {d.name}; it is dosed in {d.unit}", param="unit")
    if not 0 < dose <= 100000:
        raise UserError(f"dose={dose} must be positive", param="dose")
    order = {"id": f"MO-{len(h.state['med_orders']) + 1}", "patient_id": patient_id, "rxnorm": rxnorm,
             "drug": d.name, "dose": dose, "unit": unit, "route": route, "frequency": frequency,
             "high_alert": d.high_alert, "approval_id": _approval_for(h, patient_id, rxnorm, dose),
             "time": h.state["clock"]}
    h.state["med_orders"].append(order)
    h.audit("place_med_order", patient_id, rxnorm=rxnorm, order_id=order["id"])
    return order


def request_approval(h: Hospital, patient_id: str, rxnorm: str, dose: float, unit: Unit, route: Route,
                     frequency: Frequency, reason: str) -> dict[str, Any]:
    """Ask the attending physician to approve one exact high-alert order (they answer later, outside this task).

    Args:
        patient_id: patient id such as P017
        rxnorm: RxNorm ingredient code
        dose: amount per administration
        unit: mg, mEq or units
        route: PO, IV or SC
        frequency: once, daily, BID, TID, q6h, q8h, q12h or PRN
        reason: why the order is needed
    """
    h.patient(patient_id)
    d = drugs.drug(rxnorm)
    if unit != d.unit:
        raise UserError(f"unit={unit!r} is wrong for {d.name}; it is dosed in {d.unit}", param="unit")
    req = {"id": f"AR-{len(h.state['approval_requests']) + 1}", "patient_id": patient_id, "rxnorm": rxnorm,
           "drug": d.name, "dose": dose, "unit": unit, "route": route, "frequency": frequency, "reason": reason,
           "status": "pending", "time": h.state["clock"]}
    h.state["approval_requests"].append(req)
    h.audit("request_approval", patient_id, rxnorm=rxnorm)
    return req


def order_lab(h: Hospital, patient_id: str, loinc: str, when: When = "now") -> dict[str, Any]:
    """Order a laboratory test.

    Args:
        patient_id: patient id such as P017
        loinc: LOINC code of the test, e.g. 6298-4 potassium
        when: now or next_morning
    """
    h.patient(patient_id)
    if loinc not in records.LOINC or loinc in records.VITALS:
        labs = [c for c in records.LOINC if c not in records.VITALS]
        raise UserError(f"loinc={loinc!r} is not an orderable lab; use one of {', '.join(labs)}", param="loinc")
    order = {"id": f"LO-{len(h.state['lab_orders']) + 1}", "patient_id": patient_id, "loinc": loinc,
             "test": records.LOINC[loinc][0], "when": when, "time": h.state["clock"]}
    h.state["lab_orders"].append(order)
    h.audit("order_lab", patient_id, loinc=loinc)
    return order


Specialty = Literal["cardiology", "endocrinology", "nephrology", "pulmonology", "neurology", "orthopedics",
                    "gastroenterology", "psychiatry", "hematology", "otolaryngology"]
assert set(Specialty.__args__) == set(SPECIALTIES)  # type: ignore[attr-defined]


def create_referral(h: Hospital, patient_id: str, specialty: Specialty, icd10: str, reason: str = "") -> dict[str, Any]:
    """Refer a patient to a specialty clinic with the ICD-10-CM code of the problem (a billable leaf code).

    Args:
        patient_id: patient id such as P017
        specialty: the clinic, e.g. endocrinology
        icd10: ICD-10-CM code such as E11.9
        reason: one line for the specialist
    """
    h.patient(patient_id)
    code = icd10.strip().upper()
    if not icd.is_valid_item(code) or "-" in code:
        raise UserError(f"icd10={icd10!r} is not an ICD-10-CM code; write e.g. E11.9", param="icd10")
    code = icd.add_dot(code)
    leaf = bool(icd.is_leaf(code))
    ref = {"id": f"RF-{len(h.state['referrals']) + 1}", "patient_id": patient_id, "specialty": specialty,
           "icd10": code, "icd10_description": icd.get_description(code), "icd10_leaf": leaf,
           "icd10_category": code[:3], "reason": reason, "time": h.state["clock"]}
    h.state["referrals"].append(ref)
    h.audit("create_referral", patient_id, icd10=code)
    note = {} if leaf else {"warning": f"{code} is not billable: it has subcodes; use a leaf code under it"}
    return {**ref, **note}
