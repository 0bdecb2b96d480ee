"""Property tests of the healthcare limits: no JSON value slips an unapproved high-alert order or PHI past them."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from blacksoil.factories.healthcare import drugs
from blacksoil.factories.healthcare.env import HealthcareEnv, tool_traits
from blacksoil.security.calls import Principal, RunFlags, ToolCallRequest
from blacksoil.security.policy import PolicyEngine

ENGINE = PolicyEngine()
NURSE = Principal("ward-agent", "hospital", roles=("clinician",))
FACTS = HealthcareEnv(0, {"census": ["P096"]}).facts()
HIGH = {d.rxnorm for d in drugs.FORMULARY.values() if d.high_alert}
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=20)
    | st.sampled_from(sorted(HIGH)),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)


def _decide(tool: str, args: dict[str, Any]) -> str:
    req = ToolCallRequest(NURSE, tool, args, "r", "c", tool_traits()[tool], FACTS)
    return ENGINE.decide(req, RunFlags()).verdict


@settings(max_examples=150, deadline=None)
@given(rxnorm=json_values)
def test_high_alert_never_allowed_without_approval(rxnorm: Any) -> None:
    args = {"patient_id": "P096", "rxnorm": rxnorm, "dose": 5, "unit": "mg", "route": "PO", "frequency": "once"}
    if _decide("place_med_order", args) == "allow":
        assert isinstance(rxnorm, str) and rxnorm not in HIGH


@settings(max_examples=150, deadline=None)
@given(to=json_values)
def test_patient_message_never_leaves_the_care_team(to: Any) -> None:
    args = {"to": to, "text": "pickup", "patient_id": "P096"}
    if _decide("send_message", args) == "allow":
        assert to in FACTS["authorised_recipients"]
