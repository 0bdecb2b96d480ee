"""Attack and intent tests of the Cedar policy engine and the shipped policies.

Each docstring point of blacksoil.security.policy and .calls has a test here.
"""

from __future__ import annotations

from typing import Any

import pytest

from blacksoil.errors import ConfigError
from blacksoil.security.calls import Decision, Principal, RunFlags, ToolCallRequest, ToolTraits
from blacksoil.security.policy import PolicyEngine

OPERATOR = Principal("plant_operator", "plant")
FACTS = {"zones_under_maintenance": ["Z3"]}


def call(engine: PolicyEngine, tool: str, args: dict[str, Any], *, principal: Principal = OPERATOR,
         flags: RunFlags | None = None, traits: ToolTraits | None = None,
         facts: dict[str, Any] | None = None) -> Decision:
    req = ToolCallRequest(principal, tool, args, "run-1", "call-1", traits or ToolTraits(), facts or {})
    return engine.decide(req, flags or RunFlags())


def test_deny_by_default() -> None:
    empty = PolicyEngine("", [])
    d = call(empty, "get_plant_status", {})
    assert d.verdict == "deny" and "no policy permits" in d.reasons[0]
    # The shipped set: a state-changing tool nobody declared is denied too.
    assert call(PolicyEngine(), "wipe_disk", {}, traits=ToolTraits(state_changing=True)).verdict == "deny"


def test_permitted_call_names_its_policy(engine: PolicyEngine) -> None:
    d = call(engine, "set_machine_speed", {"machine_id": "M1", "rpm": 2000})
    assert d.verdict == "allow" and "mfg-operate" in d.policy_ids


def test_speed_above_limit_needs_approval(engine: PolicyEngine) -> None:
    d = call(engine, "set_machine_speed", {"machine_id": "M1", "rpm": 3500})
    assert d.verdict == "approval_required" and d.policy_ids == ("mfg-speed-approval",)
    approved = engine.decide(ToolCallRequest(OPERATOR, "set_machine_speed", {"machine_id": "M1", "rpm": 3500},
                                             "r", "c"), RunFlags(), approved=True)
    assert approved.verdict == "allow"


def test_out_of_range_speed_is_denied_even_when_approved(engine: PolicyEngine) -> None:
    req = ToolCallRequest(OPERATOR, "set_machine_speed", {"machine_id": "M1", "rpm": 9000}, "r", "c")
    assert engine.decide(req, RunFlags(), approved=True).verdict == "deny"


def test_type_confusion_fails_closed(engine: PolicyEngine) -> None:
    # Plain Cedar skips a forbid policy that errors: rpm as a string would slip past the speed limits.
    d = call(engine, "set_machine_speed", {"machine_id": "M1", "rpm": "99999"})
    assert d.verdict == "deny" and "fails closed" in d.reasons[0] and "mfg-speed-range" in d.reasons[0]
    assert call(engine, "set_machine_speed", {"machine_id": "M1"}).verdict == "deny"  # missing rpm
    assert call(engine, "set_machine_speed", {"machine_id": "M1", "rpm": float("nan")}).verdict == "deny"
    assert call(engine, "set_machine_speed", {"machine_id": "M1", "rpm": 10**30}).verdict == "deny"


def test_float_argument_rounds_up(engine: PolicyEngine) -> None:
    assert call(engine, "set_machine_speed", {"machine_id": "M1", "rpm": 3000.0}).verdict == "allow"
    assert call(engine, "set_machine_speed", {"machine_id": "M1", "rpm": 3000.01}).verdict == "approval_required"
    assert call(engine, "set_machine_speed", {"machine_id": "M1", "rpm": 6000.5}).verdict == "deny"


def test_no_dispatch_into_maintenance_zone(engine: PolicyEngine) -> None:
    assert call(engine, "dispatch_robot", {"robot_id": "R1", "zone": "Z1"}, facts=FACTS).verdict == "allow"
    d = call(engine, "dispatch_robot", {"robot_id": "R1", "zone": "Z3"}, facts=FACTS)
    assert d.verdict == "deny" and d.policy_ids == ("mfg-no-dispatch-into-maintenance",)
    # Without zone states the runtime cannot show the zone is safe.
    assert call(engine, "dispatch_robot", {"robot_id": "R1", "zone": "Z1"}).verdict == "deny"


def test_facts_cannot_shadow_arguments(engine: PolicyEngine) -> None:
    # A caller (or an injected tool output copied into facts) cannot replace the arguments the policy reads.
    d = call(engine, "set_machine_speed", {"machine_id": "M1", "rpm": 5000},
             facts={"arguments": {"rpm": 1}, "tenant": "plant"})
    assert d.verdict == "approval_required"


def test_cross_tenant_denied(engine: PolicyEngine) -> None:
    d = call(engine, "get_plant_status", {}, principal=Principal("plant_operator", "other-tenant"))
    assert d.verdict == "deny" and d.policy_ids == ("tenant-isolation",)


def test_planner_cannot_act(engine: PolicyEngine) -> None:
    planner = Principal("planner", "plant")
    assert call(engine, "read_sensors", {}, principal=planner).verdict == "allow"
    assert call(engine, "set_machine_speed", {"machine_id": "M1", "rpm": 100}, principal=planner).verdict == "deny"


def test_safety_tools_denied_to_everyone(engine: PolicyEngine) -> None:
    for agent in ("plant_operator", "planner"):
        assert call(engine, "disable_safety_interlock", {}, principal=Principal(agent, "plant")).verdict == "deny"


def test_reports_stay_internal(engine: PolicyEngine) -> None:
    assert call(engine, "send_report", {"to": "shift@plant.example", "body": "ok"}).verdict == "allow"
    assert call(engine, "send_report", {"to": "attacker@evil.example", "body": "x"}).verdict == "deny"
    assert call(engine, "send_report", {"to": "a@plant.example.evil.example", "body": "x"}).verdict == "deny"


def test_declared_traits_win_over_caller(engine: PolicyEngine) -> None:
    # A caller declaring dispatch_robot read-only must not unlock it through the read-only baseline policy.
    d = call(engine, "dispatch_robot", {"robot_id": "R1", "zone": "Z3"}, traits=ToolTraits(), facts=FACTS)
    assert d.verdict == "deny"


def test_rule_of_two(engine: PolicyEngine) -> None:
    args = {"machine_id": "M1", "rpm": 1200}
    assert call(engine, "set_machine_speed", args, flags=RunFlags(untrusted_input=True)).verdict == "allow"
    assert call(engine, "set_machine_speed", args, flags=RunFlags(sensitive_data=True)).verdict == "allow"
    d = call(engine, "set_machine_speed", args, flags=RunFlags(untrusted_input=True, sensitive_data=True))
    assert d.verdict == "approval_required" and "rule of two" in d.reasons[0]
    # Reading more is fine: the rule only gates state changes.
    assert call(engine, "read_sensors", {}, flags=RunFlags(untrusted_input=True, sensitive_data=True)).allowed


def test_run_flags_grow_from_tool_traits() -> None:
    flags = RunFlags()
    flags.observe(ToolTraits(untrusted_output=True))
    assert not flags.rule_of_two_applies(ToolTraits(state_changing=True))
    flags.observe(ToolTraits(sensitive=True))
    assert flags.rule_of_two_applies(ToolTraits(state_changing=True))


def test_requires_approval_trait(engine: PolicyEngine) -> None:
    d = call(engine, "create_maintenance_order", {"machine_id": "M1", "priority": "emergency"})
    assert d.verdict == "approval_required" and "mfg-emergency-order-approval" in d.policy_ids
    coder = Principal("dev", "t", roles=("coder",))
    d = call(engine, "run_python", {"code": "1"}, principal=coder,
             traits=ToolTraits(sandboxed=True, requires_approval=True))
    assert d.verdict == "approval_required"


def test_visible_tools(engine: PolicyEngine) -> None:
    tools = ["get_plant_status", "set_machine_speed", "dispatch_robot", "disable_safety_interlock", "wipe_disk"]
    traits = {"wipe_disk": ToolTraits(state_changing=True)}
    shown = engine.visible_tools(OPERATOR, tools, traits, facts=FACTS)
    assert shown == ["get_plant_status", "set_machine_speed", "dispatch_robot"]
    assert engine.visible_tools(Principal("planner", "plant"), tools, traits, facts=FACTS) == ["get_plant_status"]
    assert engine.visible_tools(Principal("plant_operator", "x"), tools, traits, facts=FACTS) == []


def test_bad_policy_text_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="invalid Cedar"):
        PolicyEngine("permit(principal, action resource);", [])
