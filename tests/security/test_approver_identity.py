"""Approver identity (issue 22, finding 6): ids normalized and matched as identities, decided_by in the chain."""

from __future__ import annotations

import pytest

from blacksoil.errors import AuthError, UserError
from blacksoil.security.approvals import ApprovalStore
from blacksoil.security.audit import AuditLog
from blacksoil.security.calls import Decision, Principal, ToolCallRequest

AGENT = Principal("plant_operator", "plant", user="alice", roles=("plant_operator",))
NEED = Decision("approval_required", ("approval: new maintenance order",), ("mfg-approval",))


def _store(audit: AuditLog) -> ApprovalStore:
    store = ApprovalStore(audit)
    store.request(ToolCallRequest(AGENT, "create_maintenance_order", {"machine_id": "M1"}, "run-1", "c1"), NEED)
    return store


@pytest.mark.parametrize("by", [" plant_operator", "plant_operator ", "Plant_Operator", "\uff50lant_operator"])
def test_agent_cannot_approve_under_a_disguised_id(audit: AuditLog, by: str) -> None:
    with pytest.raises(AuthError, match="own call"):
        _store(audit).approve("c1", by=by)


@pytest.mark.parametrize("by", ["", "   ", "\t"])
def test_empty_approver_is_refused(audit: AuditLog, by: str) -> None:
    with pytest.raises(UserError, match="approver id is empty"):
        _store(audit).approve("c1", by=by)


def test_control_characters_in_approver_are_refused(audit: AuditLog) -> None:
    with pytest.raises(UserError, match="printable"):
        _store(audit).approve("c1", by="ali\x00ce")


def test_approver_is_stored_normalized(audit: AuditLog) -> None:
    assert _store(audit).approve("c1", by="  alice ").decided_by == "alice"


def test_editing_decided_by_is_caught_by_verify(audit: AuditLog) -> None:
    _store(audit).approve("c1", by="alice")
    audit.connection.execute("UPDATE approvals SET decided_by = 'mallory' WHERE call_id = 'c1'")
    assert audit.verify()[0] is False


def test_flipping_a_denial_to_an_approval_is_caught_by_verify(audit: AuditLog) -> None:
    _store(audit).deny("c1", by="alice", reason="no")
    audit.connection.execute("UPDATE approvals SET status = 'approved' WHERE call_id = 'c1'")
    assert audit.verify()[0] is False


def test_untouched_approvals_verify(audit: AuditLog) -> None:
    _store(audit).approve("c1", by="alice")
    assert audit.verify() == (True, "")


def test_cli_empty_by_is_an_error_not_the_os_user(monkeypatch: pytest.MonkeyPatch) -> None:
    import blacksoil.agents.cli as agents_cli

    seen: dict[str, str] = {}

    def fake_decide(*_: object, by: str, **__: object) -> str:
        seen["by"] = by
        raise UserError("stop here")

    monkeypatch.setattr("blacksoil.agents.launcher.decide_call", fake_decide)
    monkeypatch.setattr(agents_cli, "_team_of", lambda run_id: None)
    with pytest.raises(UserError):
        agents_cli._decide("run-1", "c1", True, "", "", False, None, None, True)
    assert seen["by"] == ""
