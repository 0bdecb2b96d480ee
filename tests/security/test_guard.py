"""Tests of the Guard the agent runtime calls: audit of every decision, approvals through resume."""

from __future__ import annotations

from blacksoil.security.calls import Principal, RunFlags, ToolCallRequest
from blacksoil.security.guard import Guard

OP = Principal("op-1", "plant", roles=("plant_operator",))


def _req(tool: str, args: dict[str, object], call_id: str) -> ToolCallRequest:
    return ToolCallRequest(OP, tool, dict(args), "run-9", call_id)


def test_every_decision_is_audited(guard: Guard) -> None:
    guard.check(_req("list_machines", {}, "c1"), RunFlags())
    guard.check(_req("disable_safety_interlock", {}, "c2"), RunFlags())
    guard.check(_req("set_machine_speed", {"machine_id": "M1", "rpm": 4000}, "c3"), RunFlags())
    rows = [(e.call_id, e.verdict) for e in guard.audit.query(run_id="run-9", kind="decision")]
    assert rows == [("c1", "allow"), ("c2", "deny"), ("c3", "approval_required")]
    assert [p.call_id for p in guard.approvals.pending("run-9")] == ["c3"]
    assert guard.audit.verify()[0]


def test_approval_resumes_the_call(guard: Guard) -> None:
    req = _req("set_machine_speed", {"machine_id": "M1", "rpm": 4000}, "c1")
    assert guard.check(req, RunFlags()).verdict == "approval_required"
    guard.approvals.approve("c1", by="alice")
    assert guard.check(req, RunFlags()).verdict == "allow"
    # The same id with other arguments is not the approved call.
    assert guard.check(_req("set_machine_speed", {"machine_id": "M1", "rpm": 5900}, "c1"), RunFlags()).verdict == "deny"


def test_approval_cannot_unlock_forbidden_call(guard: Guard) -> None:
    # Rule of two on a call that also breaks a hard limit: approving it must not let it through.
    req = _req("set_machine_speed", {"machine_id": "M1", "rpm": 9000}, "c1")
    flags = RunFlags(untrusted_input=True, sensitive_data=True)
    assert guard.check(req, flags).verdict == "deny"
    assert guard.approvals.pending("run-9") == []


def test_denied_approval_stays_denied(guard: Guard) -> None:
    req = _req("set_machine_speed", {"machine_id": "M1", "rpm": 4000}, "c1")
    guard.check(req, RunFlags())
    guard.approvals.deny("c1", by="alice", reason="not during the night shift")
    d = guard.check(req, RunFlags())
    assert d.verdict == "deny" and "night shift" in d.reasons[0]


def test_execution_is_audited(guard: Guard) -> None:
    req = _req("list_machines", {}, "c1")
    guard.record_execution(req, ok=True, detail={"sandbox": "not sandboxed"})
    assert guard.audit.query(run_id="run-9", kind="execution")[0].detail == {"sandbox": "not sandboxed"}


def test_observe_counts_declared_traits(guard: Guard) -> None:
    from blacksoil.security.calls import ToolTraits

    # The runtime's own flags say nothing, but list_orders returns outsider-written notes (entities.json).
    flags = guard.observe(RunFlags(), "list_orders", ToolTraits())
    assert flags.untrusted_input and not flags.sensitive_data
    assert not guard.observe(RunFlags(), "list_machines", ToolTraits()).untrusted_input


def test_sandbox_verdict_is_audited(guard: Guard) -> None:
    from blacksoil.security.sandbox import SandboxResult

    req = _req("run_python", {"code": "while True: pass"}, "c9")
    guard.record_sandbox(req, SandboxResult(-24, "", "", "cpu_limit", 2010.0, False, ("namespaces", "seccomp")))
    (row,) = guard.audit.query(run_id="run-9", kind="sandbox")
    assert row.verdict == "cpu_limit" and row.detail["layers"] == ["namespaces", "seccomp"]
