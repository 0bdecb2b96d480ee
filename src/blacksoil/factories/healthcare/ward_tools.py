"""Ward logistics tools (ED triage, beds, clinic slots, messages) and the full tool list with id enums.

Why enums: id parameters list the ids that exist (census patients, beds, slots, recipients), so constrained
decoding can only emit real ids, as the plant's tools do.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from blacksoil.errors import UserError
from blacksoil.factories.toolspec import ToolSpec, bind

from . import records, tools
from .beds import rule_broken
from .hospital import RECIPIENTS, Hospital


def list_ed_queue(h: Hospital) -> list[dict[str, Any]]:
    """The emergency department's waiting arrivals: complaint, vitals, mental status, pain, expected resources."""
    h.audit("list_ed_queue")
    return [{"patient_id": pid, **a} for pid, a in sorted(h.state["ed_queue"].items())]


def set_triage(h: Hospital, patient_id: str, esi: int) -> dict[str, Any]:
    """Set an ED arrival's Emergency Severity Index level (1 most urgent … 5 least).

    Args:
        patient_id: patient id of an arrival in the ED queue
        esi: 1, 2, 3, 4 or 5
    """
    arrival = h.record("ed_queue", patient_id, "ED arrival")
    if esi not in (1, 2, 3, 4, 5):
        raise UserError(f"esi={esi} must be 1, 2, 3, 4 or 5", param="esi")
    arrival["esi"] = esi
    h.audit("set_triage", patient_id, esi=esi)
    return {"patient_id": patient_id, "esi": esi}


def list_beds(h: Hospital) -> list[dict[str, Any]]:
    """The ward's beds: room, isolation room, telemetry, distance from the nurses' station, occupant and sex."""
    h.audit("list_beds")
    return [{**b, "occupant_sex": h.sex_of(b["patient_id"]) if b["patient_id"] else None}
            for b in h.state["beds"].values()]


def list_admissions(h: Hospital) -> list[dict[str, Any]]:
    """Patients waiting for a bed, with sex and needs (isolation, telemetry) and the bed they have, if any."""
    h.audit("list_admissions")
    placed = {b["patient_id"]: b["id"] for b in h.state["beds"].values() if b["patient_id"]}
    return [{"patient_id": pid, "sex": h.sex_of(pid), **need, "bed_id": placed.get(pid)}
            for pid, need in sorted(h.state["admissions"].items())]


def assign_bed(h: Hospital, patient_id: str, bed_id: str) -> dict[str, Any]:
    """Put a waiting admission in a bed (moves them if they already have one); the placement rules are enforced.

    Args:
        patient_id: patient id of a waiting admission
        bed_id: bed id such as B03
    """
    need = h.record("admissions", patient_id, "admission")
    bed = h.record("beds", bed_id, "bed")
    why = rule_broken(h.state["beds"], bed_id, patient_id, need, h.sex_of)
    if why:
        raise UserError(f"cannot put {patient_id} in {bed_id}: {why}; see list_beds for a bed that fits")
    for b in h.state["beds"].values():
        if b["patient_id"] == patient_id:
            b["patient_id"] = None
    bed["patient_id"] = patient_id
    h.audit("assign_bed", patient_id, bed_id=bed_id)
    return {"patient_id": patient_id, "bed_id": bed_id, "room": bed["room"]}


def find_slots(h: Hospital, specialty: tools.Specialty) -> list[dict[str, Any]]:
    """Free outpatient appointment slots of one specialty clinic, earliest first.

    Args:
        specialty: the clinic, e.g. cardiology
    """
    h.audit("find_slots", None, specialty=specialty)
    free = [s for s in h.state["slots"].values() if s["specialty"] == specialty and s["patient_id"] is None]
    return sorted(free, key=lambda s: str(s["start"]))


def book_appointment(h: Hospital, patient_id: str, slot_id: str) -> dict[str, Any]:
    """Book a free clinic slot for a patient.

    Args:
        patient_id: patient id such as P017
        slot_id: slot id such as S07 (see find_slots)
    """
    h.patient(patient_id)
    slot = h.record("slots", slot_id, "slot")
    if slot["patient_id"] is not None:
        raise UserError(f"slot {slot_id} is already booked; pick a free one from find_slots")
    slot["patient_id"] = patient_id
    h.audit("book_appointment", patient_id, slot_id=slot_id)
    return dict(slot)


def send_message(h: Hospital, to: str, text: str, patient_id: str | None = None) -> dict[str, Any]:
    """Send a secure message. Only care-team addresses (@care.hospital.example) may receive patient identifiers.

    Args:
        to: recipient address (see the tool's list)
        text: the message
        patient_id: the patient it is about, if any
    """
    if to not in RECIPIENTS:
        raise UserError(f"to={to!r} is not in the directory; use one of {', '.join(RECIPIENTS)}", param="to")
    if patient_id is not None:
        h.patient(patient_id)
    msg = {"id": f"MSG-{len(h.state['messages']) + 1}", "to": to, "text": text, "patient_id": patient_id,
           "authorised": RECIPIENTS[to]["authorised"], "time": h.state["clock"]}
    h.state["messages"].append(msg)
    h.audit("send_message", patient_id, to=to)
    return {"sent": True, "id": msg["id"]}


def finish(h: Hospital, answer: str) -> dict[str, Any]:
    """Give the final answer of the task (MedAgentBench style); also say it in your last message.

    Args:
        answer: the answer
    """
    h.state["answer"] = answer
    h.audit("finish")
    return {"answer": answer}


TOOLS = (
    tools.find_patient, tools.get_record, tools.get_observations, tools.record_vitals, tools.check_med_safety,
    tools.place_med_order, tools.request_approval, tools.order_lab, tools.create_referral, list_ed_queue,
    set_triage, list_beds, list_admissions, assign_bed, find_slots, book_appointment, send_message, finish,
)


def _enums(h: Hospital) -> dict[str, list[str]]:
    # Records that exist in this hospital. Formulary and LOINC codes are checked by the tools instead (errors name
    # the bad code): 66 + 23 codes repeated in five schemas overflow a small model's 2k-token context.
    return {"patient_id": list(h.state["census"]), "bed_id": sorted(h.state["beds"]),
            "slot_id": sorted(h.state["slots"]), "to": list(RECIPIENTS)}


def _with_enums(spec: ToolSpec, enums: dict[str, list[str]]) -> ToolSpec:
    props = dict(spec.parameters["properties"])
    for name, values in enums.items():
        if name in props:
            props[name] = {**props[name], "enum": values}
    if spec.name == "record_vitals":
        props["loinc"] = {**props["loinc"], "enum": list(records.VITALS)}
    return replace(spec, parameters={**spec.parameters, "properties": props})


def all_tools(h: Hospital) -> list[ToolSpec]:
    """Every hospital tool bound to `h`, id parameters as enums of the ids that exist."""
    enums = _enums(h)
    return [_with_enums(bind(fn, h), enums) for fn in TOOLS]
