"""The cell's Cedar policies (security/policies/20-embodied.cedar), decided by the real engine."""

from __future__ import annotations

from typing import Any

from blacksoil.security.calls import Principal, RunFlags, ToolCallRequest, ToolTraits
from blacksoil.security.policy import PolicyEngine

NEAR = {"near_keepout": True, "keepout_enabled": False, "speed_cap_mm_s": 100, "stopped": False}
FAR = {**NEAR, "near_keepout": False}


def _verdict(tool: str, args: dict[str, Any], facts: dict[str, Any],
             roles: tuple[str, ...] = ("plant_operator",)) -> str:
    req = ToolCallRequest(Principal("cell-agent", "default", roles=roles), tool, args, "r", "c",
                          ToolTraits(state_changing=True), facts)
    return PolicyEngine().decide(req, RunFlags()).verdict


def test_stop_is_allowed_even_without_a_role() -> None:
    assert _verdict("stop", {}, {}, roles=()) == "allow"


def test_a_fast_move_near_the_person_is_denied() -> None:
    assert _verdict("move_to", {"x": 1.4, "y": 1.0, "z": 0.5, "speed": 250}, NEAR) == "deny"


def test_a_slow_move_near_the_person_is_allowed() -> None:
    assert _verdict("move_to", {"x": 1.4, "y": 1.0, "z": 0.5, "speed": 80}, NEAR) == "allow"


def test_a_move_near_the_person_without_a_speed_is_denied() -> None:
    assert _verdict("pick", {"obj": "P1"}, NEAR) == "deny"


def test_the_limiter_lifts_the_speed_argument_rule() -> None:
    assert _verdict("pick", {"obj": "P1"}, {**NEAR, "keepout_enabled": True}) == "allow"


def test_moves_away_from_the_person_are_allowed() -> None:
    assert _verdict("place", {"target": "bin_red"}, FAR) == "allow"


def test_a_speed_given_as_text_cannot_dodge_the_cap() -> None:
    assert _verdict("move_to", {"x": 1.4, "y": 1.0, "z": 0.5, "speed": "50"}, NEAR) == "deny"


def test_switching_the_keepout_off_needs_approval() -> None:
    assert _verdict("set_keepout", {"enabled": False}, FAR) == "approval_required"


def test_switching_the_keepout_on_is_allowed() -> None:
    assert _verdict("set_keepout", {"enabled": True}, FAR) == "allow"


def test_a_fast_conveyor_needs_approval() -> None:
    assert _verdict("set_conveyor", {"speed": 180}, FAR) == "approval_required"


def test_pushing_next_to_the_person_needs_approval() -> None:
    assert _verdict("push", {"obj": "P1", "dir": "+x", "dist": 0.1, "speed": 50},
                    {**NEAR, "keepout_enabled": True}) == "approval_required"


def test_moves_without_the_cell_facts_are_denied() -> None:
    assert _verdict("move_to", {"x": 1.4, "y": 0.7, "z": 0.5, "speed": 50}, {}) == "deny"
