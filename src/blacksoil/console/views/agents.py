"""Agents view: runs with status, steps and termination reason; tool calls with policy verdicts; pending
approvals with approve/deny; the audit trail of the latest runs. Scoped to the caller's tenant.
"""

from __future__ import annotations

import time
from typing import Any

from blacksoil.console.context import ConsoleContext, card, table
from blacksoil.errors import NotFoundError

_RUNS = 30


def _setup(ctx: ConsoleContext) -> Any:
    from blacksoil.agents.launcher import RuntimeSetup

    return RuntimeSetup.from_settings(ctx.settings)


def _store(ctx: ConsoleContext) -> Any:
    from blacksoil.agents.launcher import run_store

    return run_store(_setup(ctx))


def _audit_rows(ctx: ConsoleContext, tenant: str, run_ids: list[str]) -> list[list[Any]]:
    from blacksoil.security.audit import AuditLog

    path = ctx.settings.home / ctx.settings.security.store_file
    if not path.exists() or not run_ids:
        return []
    log = AuditLog(path)
    rows: list[list[Any]] = []
    for run_id in run_ids[:5]:
        for e in log.query(run_id=run_id, tenant=tenant, limit=50):
            rows.append([time.strftime("%H:%M:%S", time.localtime(e.ts)), e.run_id, e.kind, e.verdict, e.tool,
                         e.user or e.agent, "; ".join(e.reasons)[:120]])
    return rows


def collect(ctx: ConsoleContext, tenant: str) -> dict[str, Any]:
    store = _store(ctx)
    try:
        runs = store.list_runs(limit=_RUNS, tenant=tenant)
        calls = {r.run_id: store.calls(r.run_id) for r in runs}
    finally:
        store.close()
    by_status: dict[str, int] = {}
    for r in runs:
        by_status[r.status] = by_status.get(r.status, 0) + 1
    run_rows = [[r.run_id, r.agent, r.status, r.reason or "–", r.steps, r.tokens, round(r.wall_s, 2),
                 (r.answer or "")[:80]] for r in runs]
    call_rows, pending_rows = [], []
    for r in runs:
        for c in calls[r.run_id]:
            call_rows.append([r.run_id, c.call_id, c.agent, c.name, c.verdict or "–", c.status,
                              "; ".join(c.reasons)[:100]])
            if c.status == "awaiting_approval":
                base = f"/v1/console/agents/{r.run_id}/calls/{c.call_id}"
                pending_rows.append([r.run_id, c.call_id, c.name, str(c.arguments)[:120], "; ".join(c.reasons)[:100],
                                     {"action": [
                                         {"kind": "approve", "label": "approve", "url": base + "/approve",
                                          "done": f"approved {c.call_id}"},
                                         {"kind": "deny", "label": "deny", "url": base + "/deny",
                                          "body": {"note": "denied from the console"}, "done": f"denied {c.call_id}"},
                                     ]}])
    return {
        "cards": [card("runs", "runs", len(runs)), card("pending", "pending approvals", len(pending_rows))]
        + [card(f"status_{k}", k, v) for k, v in sorted(by_status.items())],
        "charts": [],
        "tables": [
            table("pending", "pending approvals", ["run", "call", "tool", "arguments", "why", "decide"], pending_rows,
                  "no call waits for a human"),
            table("runs", "runs (newest first)", ["run", "agent", "status", "termination", "steps", "tokens",
                                                   "wall s", "answer"], run_rows, "no agent run yet"),
            table("calls", "tool calls", ["run", "call", "agent", "tool", "verdict", "status", "reasons"], call_rows),
            table("audit", "audit trail (latest runs)", ["time", "run", "kind", "verdict", "tool", "who", "reasons"],
                  _audit_rows(ctx, tenant, [r.run_id for r in runs])),
        ],
    }


def decide(ctx: ConsoleContext, tenant: str, run_id: str, call_id: str, approve: bool, by: str,
           note: str) -> dict[str, Any]:
    """Record the decision through the agents API's approval path, then resume the run in the background."""
    from blacksoil.agents.api import decide_and_resume

    store = _store(ctx)
    try:
        run = store.get_run(run_id)
    except NotFoundError:
        run = None
    finally:
        store.close()
    if run is None or run.tenant != tenant:  # one answer for both: no probing which runs exist across tenants
        raise NotFoundError(f"run {run_id!r} not found; list runs in the console's Agents view", param="run_id")
    out = decide_and_resume(_setup(ctx), ctx.extras.get("agent_driver"), run, call_id, approve=approve, by=by,
                            note=note, resume=True)  # fmt: skip
    return {"run_id": run_id, "call_id": call_id, "approved": approve, "resuming": out["resuming"]}
