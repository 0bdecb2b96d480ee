"""The one object the agent runtime asks before every tool call: policy + approvals + audit together.

`Guard.check(req, flags)` decides, audits and, when a human must look, records the pending call.

What this protects, and what it does not (tests in tests/security/test_guard.py):
- Protects: every decision is audited before the runtime sees it; a runtime that skips the check leaves no
  "allow" row, which the injection suite uses to detect a bypass — test_every_decision_is_audited.
- Protects: an approved call runs only with the arguments the human saw, and still passes the hard policies
  (an approval cannot unlock a forbidden call) — test_approval_cannot_unlock_forbidden_call.
- Protects: a denied approval stays denied when the run resumes — test_denied_approval_stays_denied.
- Does not protect: a runtime that executes tools without calling `check` (the runtime is trusted code).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from blacksoil.errors import ConfigError
from blacksoil.security.approvals import ApprovalStore, PendingCall
from blacksoil.security.audit import AuditLog
from blacksoil.security.calls import Decision, Principal, RunFlags, ToolCallRequest, ToolTraits, Verdict
from blacksoil.security.config import SecurityConfig
from blacksoil.security.policy import PolicyEngine
from blacksoil.security.sandbox import SandboxResult

__all__ = [
    "Decision", "Guard", "PendingCall", "PolicyEngine", "Principal", "RunFlags", "ToolCallRequest", "ToolTraits",
    "Verdict",
]


class Guard:
    """Policy decision + approval state + audit for each tool call of a run."""

    def __init__(
        self, engine: PolicyEngine | None = None, audit: AuditLog | None = None, store_path: Path | None = None, *,
        config: SecurityConfig | None = None,
    ) -> None:
        """Without `engine`: the shipped policies plus `config.policy_files` (the caller's security settings)."""
        self.engine = engine or PolicyEngine.from_files(Path(p) for p in (config or SecurityConfig()).policy_files)
        if audit is None and store_path is None:
            raise ConfigError("Guard needs its audit log: pass audit=AuditLog(path) or store_path=home / "
                              "security.store_file")
        self.audit = audit or AuditLog(store_path)
        self.approvals = ApprovalStore(self.audit)

    def check(self, req: ToolCallRequest, flags: RunFlags) -> Decision:
        """The verdict on this call, after any human decision already recorded for it; audited."""
        status = self.approvals.status_for(req)
        if status == "denied":
            call = self.approvals.get(req.call_id)
            decision = Decision("deny", (f"denied by {call.decided_by}: {call.note or 'no reason given'}",), ())
        else:
            decision = self.engine.decide(req, flags, approved=status == "approved")
        self.audit.append("decision", decision.verdict, run_id=req.run_id, call_id=req.call_id,
                          agent=req.principal.agent, tenant=req.principal.tenant, user=req.principal.user,
                          tool=req.tool, arguments=req.arguments, reasons=decision.reasons,
                          policy_ids=decision.policy_ids)
        if decision.verdict == "approval_required" and status is None:
            self.approvals.request(req, decision)
        return decision

    def record_execution(self, req: ToolCallRequest, ok: bool, detail: Mapping[str, Any] | None = None) -> None:
        """Audit that an allowed call ran (ok or failed), e.g. with the sandbox verdict in `detail`."""
        self.audit.append("execution", "ok" if ok else "error", run_id=req.run_id, call_id=req.call_id,
                          agent=req.principal.agent, tenant=req.principal.tenant, user=req.principal.user,
                          tool=req.tool, arguments=req.arguments, detail=detail)

    def record_sandbox(self, req: ToolCallRequest, result: SandboxResult) -> None:
        """Audit how a sandboxed call ended (verdict, active layers, network use) beside its decision."""
        self.audit.append("sandbox", result.verdict, run_id=req.run_id, call_id=req.call_id,
                          agent=req.principal.agent, tenant=req.principal.tenant, user=req.principal.user,
                          tool=req.tool, arguments=req.arguments,
                          detail={"exit_code": result.exit_code, "duration_ms": round(result.duration_ms, 1),
                                  "truncated": result.truncated, "layers": list(result.layers),
                                  "network": list(result.network)})

    def observe(self, flags: RunFlags, tool: str, traits: ToolTraits) -> RunFlags:
        """The run's flags after an executed call, counting what the policy entities declare about the tool too
        (e.g. list_orders returns outsider-written notes even where the runtime's own flags say nothing)."""
        grown = flags.copy()
        grown.observe(self.engine.traits_of(tool, traits))
        return grown

    def visible_tools(
        self, principal: Principal, tools: Sequence[str], traits: Mapping[str, ToolTraits] | None = None,
        facts: Mapping[str, Any] | None = None,
    ) -> list[str]:
        """The tools to show the model for this principal."""
        return self.engine.visible_tools(principal, tools, traits, facts)

