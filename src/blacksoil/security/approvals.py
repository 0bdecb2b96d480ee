"""Human approval of tool calls: a paused run's pending calls, and the approve / deny that resumes it.

Stored beside the audit log (same SQLite file); every request and decision is audited.

What this protects, and what it does not (tests in tests/security/test_approvals.py):
- Protects: an approval covers exactly the call that was shown — same call id AND same arguments; a call that
  comes back with other arguments under an approved id is not approved — test_approval_bound_to_arguments.
- Protects: an agent cannot approve its own call (approver == the calling agent is refused, ids compared after
  normalization: spaces, Unicode forms and case do not make another identity) — test_agent_cannot_self_approve,
  test_approver_ids_are_normalized.
- Protects: who decided and what is in the audit hash chain; `AuditLog.verify` cross-checks the approvals table
  against it, so editing decided_by or status is detected — test_decided_by_is_in_the_chain.
- Protects: a decided call cannot be decided again (no flipping a deny into an approve) — test_decide_once.
- Does not protect: against a careless human approving a bad call; the request shows the reasons to help them.
- Does not authenticate the approver: `by` is whoever the CLI or console says; authentication is the
  console's job.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import time
import unicodedata
from dataclasses import dataclass
from typing import Any, Literal

from blacksoil.errors import AuthError, NotFoundError, UserError
from blacksoil.security.audit import AuditLog, redact
from blacksoil.security.calls import Decision, ToolCallRequest

Status = Literal["pending", "approved", "denied"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS approvals (
  call_id TEXT PRIMARY KEY, run_id TEXT NOT NULL, agent TEXT NOT NULL, tenant TEXT NOT NULL, tool TEXT NOT NULL,
  arguments TEXT NOT NULL, arguments_hash TEXT NOT NULL, reasons TEXT NOT NULL, status TEXT NOT NULL,
  requested_at REAL NOT NULL, decided_at REAL, decided_by TEXT, note TEXT);
CREATE INDEX IF NOT EXISTS approvals_run ON approvals(run_id, status);
"""


APPROVER_MAX = 200
"""Longest approver id (characters)."""


def normalize_approver(by: str | None) -> str:
    """The approver id as an identity: NFKC-normalized and stripped; empty or control characters are refused.

    `--by " plant_operator"` (a leading space) used to pass as a human where `plant_operator` was refused, and
    `--by ""` silently became the OS user.
    """
    name = unicodedata.normalize("NFKC", by or "").strip()
    if not name:
        raise UserError("the approver id is empty; pass --by NAME with the deciding person's id", param="by")
    if len(name) > APPROVER_MAX or any(unicodedata.category(c).startswith("C") for c in name):
        raise UserError(f"the approver id must be at most {APPROVER_MAX} printable characters; pass --by NAME",
                        param="by")
    return name


def same_identity(a: str, b: str) -> bool:
    """Whether two ids name the same principal (normalized, case-insensitive: `Plant_Operator` is the agent)."""
    return unicodedata.normalize("NFKC", a).strip().casefold() == unicodedata.normalize("NFKC", b).strip().casefold()


def arguments_hash(tool: str, arguments: dict[str, Any]) -> str:
    """Stable hash of a call's tool and full (unredacted) arguments: what an approval is bound to."""
    return hashlib.sha256(json.dumps([tool, arguments], sort_keys=True, default=str).encode()).hexdigest()


@dataclass(frozen=True)
class PendingCall:
    """A call waiting for (or given) a human decision; arguments are redacted for display."""

    call_id: str
    run_id: str
    agent: str
    tenant: str
    tool: str
    arguments: dict[str, Any]
    reasons: tuple[str, ...]
    status: Status
    decided_by: str | None
    note: str | None


class ApprovalStore:
    """Pending calls per run; `approve` / `deny` record a human's decision once."""

    def __init__(self, audit: AuditLog) -> None:
        self._audit = audit
        self._conn: sqlite3.Connection = audit.connection
        self._conn.executescript(_SCHEMA)

    def request(self, req: ToolCallRequest, decision: Decision) -> PendingCall:
        """Record that `req` waits for approval (idempotent for the same call id and arguments)."""
        h = arguments_hash(req.tool, req.arguments)
        existing = self._row(req.call_id)
        if existing is not None:
            if existing[6] != h:
                raise UserError(f"call id {req.call_id!r} was already requested with other arguments; "
                                "use a fresh call id for a new call")
            return self.get(req.call_id)
        with self._audit.lock:
            self._conn.execute(
                "INSERT INTO approvals VALUES (?,?,?,?,?,?,?,?,'pending',?,NULL,NULL,NULL)",
                (req.call_id, req.run_id, req.principal.agent, req.principal.tenant, req.tool,
                 json.dumps(redact(req.arguments), sort_keys=True), h, json.dumps(list(decision.reasons)),
                 time.time()),
            )
        self._audit.append("approval", "requested", run_id=req.run_id, call_id=req.call_id,
                           agent=req.principal.agent, tenant=req.principal.tenant, user=req.principal.user,
                           tool=req.tool, arguments=req.arguments, reasons=decision.reasons,
                           policy_ids=decision.policy_ids)
        return self.get(req.call_id)

    def pending(self, run_id: str) -> list[PendingCall]:
        """Calls of this run still waiting for a human."""
        with self._audit.lock:
            rows = self._conn.execute(
                "SELECT call_id FROM approvals WHERE run_id = ? AND status = 'pending' ORDER BY requested_at",
                (run_id,)).fetchall()
        return [self.get(r[0]) for r in rows]

    def get(self, call_id: str) -> PendingCall:
        r = self._row(call_id)
        if r is None:
            raise NotFoundError(
                f"no approval request for call {call_id!r}; list them with `blacksoil agent show RUN_ID`")
        return PendingCall(call_id=r[0], run_id=r[1], agent=r[2], tenant=r[3], tool=r[4], arguments=json.loads(r[5]),
                           reasons=tuple(json.loads(r[7])), status=r[8], decided_by=r[11], note=r[12])

    def approve(self, call_id: str, by: str, note: str = "") -> PendingCall:
        """A human approves the pending call."""
        return self._decide(call_id, "approved", by, note)

    def deny(self, call_id: str, by: str, reason: str) -> PendingCall:
        """A human denies the pending call; the run sees the reason as the tool's result."""
        return self._decide(call_id, "denied", by, reason)

    def _decide(self, call_id: str, status: Status, by: str, note: str) -> PendingCall:
        call = self.get(call_id)
        by = normalize_approver(by)
        if same_identity(by, call.agent):
            raise AuthError(f"agent {by!r} cannot decide on its own call {call_id!r}; a human must approve it")
        with self._audit.lock:
            cur = self._conn.execute(
                "UPDATE approvals SET status = ?, decided_at = ?, decided_by = ?, note = ? "
                "WHERE call_id = ? AND status = 'pending'", (status, time.time(), by, note, call_id))
        if cur.rowcount != 1:
            raise UserError(
                f"call {call_id!r} was already {call.status} by {call.decided_by}; it cannot be decided twice")
        self._audit.append("approval", status, run_id=call.run_id, call_id=call_id, agent=call.agent,
                           tenant=call.tenant, user=by, tool=call.tool, arguments=call.arguments,
                           reasons=(note,) if note else (), detail={"decided_by": by})
        return self.get(call_id)

    def status_for(self, req: ToolCallRequest) -> Status | None:
        """approved / denied / pending for exactly this call (id and arguments), None if never requested.
        A call whose arguments differ from the requested ones is never 'approved'."""
        r = self._row(req.call_id)
        if r is None:
            return None
        if r[6] != arguments_hash(req.tool, req.arguments):
            return "denied"
        status: Status = r[8]
        return status

    def _row(self, call_id: str) -> tuple[Any, ...] | None:
        with self._audit.lock:
            row: tuple[Any, ...] | None = self._conn.execute(
                "SELECT * FROM approvals WHERE call_id = ?", (call_id,)).fetchone()
        return row
