"""Property tests of the policy engine: any JSON arguments give a decision, and limits hold for every value."""

from __future__ import annotations

import math
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from blacksoil.security.calls import Principal, RunFlags, ToolCallRequest
from blacksoil.security.policy import PolicyEngine

ENGINE = PolicyEngine()
OP = Principal("op-1", "plant", roles=("plant_operator",))
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)


@settings(max_examples=150, deadline=None)
@given(rpm=json_values, extra=st.dictionaries(st.text(max_size=8), json_values, max_size=3))
def test_speed_limits_hold_for_any_value(rpm: Any, extra: dict[str, Any]) -> None:
    args = {**extra, "machine_id": "M1", "rpm": rpm}
    d = ENGINE.decide(ToolCallRequest(OP, "set_machine_speed", args, "r", "c"), RunFlags())
    if d.verdict != "deny":
        # Only a real number in range gets through; bools, strings, lists, NaN and huge values never do.
        assert isinstance(rpm, (int, float)) and not isinstance(rpm, bool) and math.isfinite(rpm)
        assert 0 <= math.ceil(rpm) <= 6000
        assert d.verdict == ("allow" if math.ceil(rpm) <= 3000 else "approval_required")


@settings(max_examples=100, deadline=None)
@given(station=json_values)
def test_dispatch_into_maintenance_never_allowed(station: Any) -> None:
    args = {"robot_id": "R1", "part_id": "P1", "to_station": station}
    facts = {"zones_under_maintenance": ["S3"]}
    d = ENGINE.decide(ToolCallRequest(OP, "dispatch_robot", args, "r", "c", context=facts), RunFlags())
    if d.verdict == "allow":
        assert isinstance(station, str) and station != "S3"


@settings(max_examples=100, deadline=None)
@given(machine=json_values, state=json_values)
def test_restart_of_down_machine_always_gated(machine: Any, state: Any) -> None:
    args = {"machine_id": machine, "state": state}
    facts = {"machines_down": ["M7"]}
    d = ENGINE.decide(ToolCallRequest(OP, "set_machine_state", args, "r", "c", context=facts), RunFlags())
    if d.verdict == "allow":
        assert isinstance(machine, str) and isinstance(state, str) and (machine, state) != ("M7", "running")


@settings(max_examples=100, deadline=None)
@given(priority=json_values)
def test_rush_priority_always_gated(priority: Any) -> None:
    d = ENGINE.decide(ToolCallRequest(OP, "set_order_priority", {"order_id": "O1", "priority": priority}, "r", "c"),
                      RunFlags())
    if d.verdict == "allow":
        assert isinstance(priority, str) and priority != "rush"
