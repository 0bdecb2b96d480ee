"""20-healthcare.cedar on real hospital facts: read-only tasks, high-alert approvals, PHI to the care team only."""

from __future__ import annotations

import re
from importlib import resources
from typing import Any

from blacksoil.factories.healthcare import drugs
from blacksoil.factories.healthcare.env import HealthcareEnv, tool_traits
from blacksoil.security.calls import Principal, RunFlags, ToolCallRequest
from blacksoil.security.policy import PolicyEngine

ENGINE = PolicyEngine()
NURSE = Principal("ward-agent", "hospital", user="nurse", roles=("clinician",))
HEPARIN = {"patient_id": "P096", "rxnorm": "5224", "dose": 5000.0, "unit": "units", "route": "SC",
           "frequency": "q12h"}


def _verdict(tool: str, args: dict[str, Any], env: HealthcareEnv | None = None, flags: RunFlags | None = None) -> str:
    env = env or HealthcareEnv(0, {"census": ["P096", "P017"]})
    req = ToolCallRequest(NURSE, tool, args, "r", "r:1", tool_traits()[tool], env.facts())
    return ENGINE.decide(req, flags or RunFlags()).verdict


def test_clinician_may_read() -> None:
    assert _verdict("get_record", {"patient_id": "P096", "sections": ["allergies"]}) == "allow"


def test_read_only_task_may_not_write() -> None:
    env = HealthcareEnv(0, {"census": ["P096"], "mode": "read_only"})
    assert _verdict("order_lab", {"patient_id": "P096", "loinc": "6298-4"}, env) == "deny"


def test_read_only_task_may_read() -> None:
    env = HealthcareEnv(0, {"census": ["P096"], "mode": "read_only"})
    assert _verdict("get_observations", {"patient_id": "P096", "loinc": "6298-4"}, env) == "allow"


def test_high_alert_order_without_approval_needs_a_human() -> None:
    assert _verdict("place_med_order", HEPARIN) == "approval_required"


def test_high_alert_order_with_its_approval_is_allowed() -> None:
    env = HealthcareEnv(0, {"census": ["P096"], "approvals": {"A-1": {**HEPARIN, "id": "A-1"}}})
    assert _verdict("place_med_order", HEPARIN, env) == "allow"


def test_approval_does_not_cover_another_dose() -> None:
    env = HealthcareEnv(0, {"census": ["P096"], "approvals": {"A-1": {**HEPARIN, "id": "A-1"}}})
    assert _verdict("place_med_order", {**HEPARIN, "dose": 25000.0}, env) == "approval_required"


def test_high_alert_code_in_a_list_is_denied() -> None:
    assert _verdict("place_med_order", {**HEPARIN, "rxnorm": ["5224"]}) == "deny"


def test_ordinary_drug_needs_no_approval() -> None:
    args = {**HEPARIN, "rxnorm": "161", "dose": 650.0, "unit": "mg", "route": "PO", "frequency": "q6h"}
    assert _verdict("place_med_order", args) == "allow"


def test_message_about_a_patient_to_a_vendor_is_denied() -> None:
    args = {"to": "transport@movecare.example", "text": "pickup at 14:00", "patient_id": "P096"}
    assert _verdict("send_message", args) == "deny"


def test_mrn_to_an_outside_address_is_denied() -> None:
    assert _verdict("send_message", {"to": "research-list@university.example", "text": "MRN 123"}) == "deny"


def test_message_about_a_patient_to_the_care_team_is_allowed() -> None:
    args = {"to": "ward-3b@care.hospital.example", "text": "MRN 123 at 14:00", "patient_id": "P096"}
    assert _verdict("send_message", args) == "allow"


def test_plain_logistics_to_a_vendor_is_allowed() -> None:
    assert _verdict("send_message", {"to": "transport@movecare.example", "text": "pickup at 14:00"}) == "allow"


def test_after_reading_phi_outside_messages_need_a_human() -> None:
    flags = RunFlags()
    flags.observe(tool_traits()["get_record"])
    args = {"to": "transport@movecare.example", "text": "pickup at 14:00"}
    assert _verdict("send_message", args, flags=flags) == "approval_required"


def test_policy_lists_exactly_the_high_alert_formulary() -> None:
    text = (resources.files("blacksoil.security") / "policies" / "20-healthcare.cedar").read_text()
    block = text.split('@id("health-high-alert-needs-approval")')[1].split("unless")[0]
    assert set(re.findall(r'"(\d+)"', block)) == {d.rxnorm for d in drugs.FORMULARY.values() if d.high_alert}
