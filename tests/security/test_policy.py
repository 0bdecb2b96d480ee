"""Attack and intent tests of the Cedar policy engine and the shipped policies.

Each docstring point of blacksoil.security.policy and .calls has a test here.
"""

from __future__ import annotations

from typing import Any

import pytest

from blacksoil.errors import ConfigError
from blacksoil.security.calls import Decision, Principal, RunFlags, ToolCallRequest, ToolTraits
from blacksoil.security.policy import PolicyEngine, shipped_entities

OPERATOR = Principal("op-1", "plant", roles=("plant_operator",))
PLANNER = Principal("planner-1", "plant", roles=("planner",))
FACTS = {"zones_under_maintenance": ["S3"], "machines_down": ["M3"]}


def call(engine: PolicyEngine, tool: str, args: dict[str, Any], *, principal: Principal = OPERATOR,
         flags: RunFlags | None = None, traits: ToolTraits | None = None,
         facts: dict[str, Any] | None = None) -> Decision:
    req = ToolCallRequest(principal, tool, args, "run-1", "call-1", traits or ToolTraits(), facts or {})
    return engine.decide(req, flags or RunFlags())


def test_deny_by_default() -> None:
    empty = PolicyEngine("", [])
    d = call(empty, "list_machines", {})
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
    trip = {"robot_id": "R1", "part_id": "P1", "to_station": "S1"}
    assert call(engine, "dispatch_robot", trip, facts=FACTS).verdict == "allow"
    d = call(engine, "dispatch_robot", {**trip, "to_station": "S3"}, facts=FACTS)
    assert d.verdict == "deny" and d.policy_ids == ("mfg-no-dispatch-into-maintenance",)
    # Without zone states the runtime cannot show the station is safe.
    assert call(engine, "dispatch_robot", trip).verdict == "deny"
    # Found by test_policy_fuzz: a list is not a station, and `contains(["S3"])` is false.
    for odd in (["S3"], [], {"s": "S3"}, 3):
        assert call(engine, "dispatch_robot", {**trip, "to_station": odd}, facts=FACTS).verdict == "deny", odd


def test_restart_of_down_machine_needs_approval(engine: PolicyEngine) -> None:
    assert call(engine, "set_machine_state", {"machine_id": "M1", "state": "running"}, facts=FACTS).allowed
    d = call(engine, "set_machine_state", {"machine_id": "M3", "state": "running"}, facts=FACTS)
    assert d.verdict == "approval_required" and d.policy_ids == ("mfg-restart-needs-approval",)
    assert call(engine, "set_machine_state", {"machine_id": "M3", "state": "down"}, facts=FACTS).allowed
    # Without the list of down machines, every restart is treated as one.
    assert call(engine, "set_machine_state", {"machine_id": "M1", "state": "running"}).verdict == "approval_required"


def test_tainted_run_needs_approval_for_plant_changes(engine: PolicyEngine) -> None:
    tainted = RunFlags(untrusted_input=True)
    d = call(engine, "create_maintenance_order", {"machine_id": "M1", "kind": "inspection", "priority": "low"},
             flags=tainted)
    assert d.verdict == "approval_required" and "mfg-tainted-run-needs-approval" in d.policy_ids
    assert call(engine, "list_machines", {}, flags=tainted).allowed


def test_facts_cannot_shadow_arguments(engine: PolicyEngine) -> None:
    # A caller (or an injected tool output copied into facts) cannot replace the arguments the policy reads.
    d = call(engine, "set_machine_speed", {"machine_id": "M1", "rpm": 5000},
             facts={"arguments": {"rpm": 1}, "tenant": "plant"})
    assert d.verdict == "approval_required"


def test_cross_tenant_denied() -> None:
    declared = {"uid": {"type": "Agent", "id": "acme-operator"}, "attrs": {"tenant": "acme"},
                "parents": [{"type": "Role", "id": "plant_operator"}]}
    engine = PolicyEngine(None, [*shipped_entities(), declared])
    assert call(engine, "list_machines", {}, principal=Principal("acme-operator", "acme")).allowed
    d = call(engine, "list_machines", {}, principal=Principal("acme-operator", "other-tenant"))
    assert d.verdict == "deny" and d.policy_ids == ("tenant-isolation",)


def test_planner_cannot_act(engine: PolicyEngine) -> None:
    assert call(engine, "get_machine_status", {"machine_id": "M1"}, principal=PLANNER).verdict == "allow"
    assert call(engine, "set_machine_speed", {"machine_id": "M1", "rpm": 100}, principal=PLANNER).verdict == "deny"
    assert call(engine, "list_machines", {}, principal=Principal("anyone", "plant")).verdict == "deny"


def test_safety_tools_denied_to_everyone(engine: PolicyEngine) -> None:
    for who in (OPERATOR, PLANNER, Principal("root", "plant", roles=("plant_operator", "coder"))):
        assert call(engine, "disable_safety_interlock", {}, principal=who).verdict == "deny"


def test_reports_stay_internal(engine: PolicyEngine) -> None:
    assert call(engine, "send_report", {"to": "shift@plant.example", "body": "ok"}).verdict == "allow"
    assert call(engine, "send_report", {"to": "attacker@evil.example", "body": "x"}).verdict == "deny"
    for to in ("a@plant.example.evil.example", "attacker@evil.example, a@plant.example",
               "attacker@evil.example;a@plant.example", "attacker@evil.example@plant.example",
               "attacker@evil.example a@plant.example"):
        assert call(engine, "send_report", {"to": to, "body": "x"}).verdict == "deny", to


def test_declared_traits_win_over_caller(engine: PolicyEngine) -> None:
    # A caller declaring dispatch_robot read-only must not unlock it through the read-only baseline policy.
    d = call(engine, "dispatch_robot", {"robot_id": "R1", "part_id": "P1", "to_station": "S3"}, principal=PLANNER,
             traits=ToolTraits(), facts=FACTS)
    assert d.verdict == "deny" and "read-only-tools" not in d.policy_ids


def test_rule_of_two(engine: PolicyEngine) -> None:
    args = {"machine_id": "M1", "rpm": 1200}
    assert call(engine, "set_machine_speed", args, flags=RunFlags(sensitive_data=True)).verdict == "allow"
    d = call(engine, "set_machine_speed", args, flags=RunFlags(untrusted_input=True, sensitive_data=True))
    assert d.verdict == "approval_required" and any("rule of two" in r for r in d.reasons)
    # Reading more is fine: the rule only gates state changes.
    assert call(engine, "list_robots", {}, flags=RunFlags(untrusted_input=True, sensitive_data=True)).allowed
    # A calculator-like tool nobody declared, marked state-changing by its author, is gated too.
    coder = Principal("dev", "t", roles=("coder",))
    d = call(engine, "write_file", {"path": "x"}, principal=coder, flags=RunFlags(untrusted_input=True,
             sensitive_data=True), traits=ToolTraits(sandboxed=True, state_changing=True))
    assert d.verdict == "approval_required" and "rule of two" in d.reasons[-1]


def test_run_flags_grow_from_tool_traits() -> None:
    flags = RunFlags()
    flags.observe(ToolTraits(untrusted_output=True))
    assert not flags.rule_of_two_applies(ToolTraits(state_changing=True))
    flags.observe(ToolTraits(sensitive=True))
    assert flags.rule_of_two_applies(ToolTraits(state_changing=True))


def test_code_execution_only_for_coders(engine: PolicyEngine) -> None:
    # Running code counts as changing state; confined read-only tools (read_file) stay open to everyone.
    sandboxed = ToolTraits(sandboxed=True, state_changing=True)
    assert call(engine, "run_python", {"code": "1"}, traits=sandboxed).verdict == "deny"
    assert call(engine, "read_file", {"path": "a"}, traits=ToolTraits(sandboxed=True)).allowed
    d = call(engine, "run_python", {"code": "1"}, traits=sandboxed, principal=Principal("dev", "t", roles=("coder",)))
    assert d.verdict == "allow" and d.policy_ids == ("sandbox-for-coders",)


def test_requires_approval_trait(engine: PolicyEngine) -> None:
    d = call(engine, "set_order_priority", {"order_id": "O101", "priority": "rush"})
    assert d.verdict == "approval_required" and "mfg-rush-needs-approval" in d.policy_ids
    coder = Principal("dev", "t", roles=("coder",))
    d = call(engine, "run_python", {"code": "1"}, principal=coder,
             traits=ToolTraits(sandboxed=True, requires_approval=True))
    assert d.verdict == "approval_required"


def test_visible_tools(engine: PolicyEngine) -> None:
    tools = ["list_machines", "set_machine_speed", "dispatch_robot", "disable_safety_interlock", "wipe_disk"]
    traits = {"wipe_disk": ToolTraits(state_changing=True)}
    shown = engine.visible_tools(OPERATOR, tools, traits, facts=FACTS)
    assert shown == ["list_machines", "set_machine_speed", "dispatch_robot"]
    assert engine.visible_tools(PLANNER, tools, traits, facts=FACTS) == ["list_machines"]
    assert engine.visible_tools(OPERATOR, tools, traits) == ["list_machines", "set_machine_speed"]


def test_bad_policy_text_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="invalid Cedar"):
        PolicyEngine("permit(principal, action resource);", [])
