"""Attack tests of the approval store: approvals bound to arguments, no self-approval, decide once."""

from __future__ import annotations

import pytest

from blacksoil.errors import AuthError, NotFoundError, UserError
from blacksoil.security.approvals import ApprovalStore
from blacksoil.security.audit import AuditLog
from blacksoil.security.calls import Decision, Principal, ToolCallRequest

OP = Principal("op-1", "plant", user="alice", roles=("plant_operator",))
NEED = Decision("approval_required", ("approval: machine speed above 3000 rpm",), ("mfg-speed-approval",))


def _req(rpm: int, call_id: str = "c1") -> ToolCallRequest:
    return ToolCallRequest(OP, "set_machine_speed", {"machine_id": "M1", "rpm": rpm}, "run-1", call_id)


def test_pending_then_approved(audit: AuditLog) -> None:
    store = ApprovalStore(audit)
    store.request(_req(3500), NEED)
    store.request(_req(3500), NEED)  # idempotent
    assert [p.call_id for p in store.pending("run-1")] == ["c1"]
    assert store.status_for(_req(3500)) == "pending"
    store.approve("c1", by="alice")
    assert store.pending("run-1") == [] and store.status_for(_req(3500)) == "approved"
    kinds = [(e.kind, e.verdict) for e in audit.query(run_id="run-1")]
    assert kinds == [("approval", "requested"), ("approval", "approved")]


def test_approval_bound_to_arguments(audit: AuditLog) -> None:
    store = ApprovalStore(audit)
    store.request(_req(3500), NEED)
    store.approve("c1", by="alice")
    # The same call id coming back with a higher speed is not what alice approved.
    assert store.status_for(_req(5900)) == "denied"
    with pytest.raises(UserError, match="other arguments"):
        store.request(_req(5900), NEED)


def test_agent_cannot_self_approve(audit: AuditLog) -> None:
    store = ApprovalStore(audit)
    store.request(_req(3500), NEED)
    with pytest.raises(AuthError, match="own call"):
        store.approve("c1", by="op-1")
    with pytest.raises(UserError, match="approver"):
        store.approve("c1", by=" ")


def test_decide_once(audit: AuditLog) -> None:
    store = ApprovalStore(audit)
    store.request(_req(3500), NEED)
    store.deny("c1", by="alice", reason="line is running a critical batch")
    with pytest.raises(UserError, match="already denied"):
        store.approve("c1", by="mallory")
    assert store.get("c1").status == "denied"


def test_unknown_call(audit: AuditLog) -> None:
    with pytest.raises(NotFoundError, match="nope"):
        ApprovalStore(audit).approve("nope", by="alice")
