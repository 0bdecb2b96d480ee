"""A tenant's view of the experience store: every read, reward, export and purge filters by tenant.

What is protected, and what is not (attack tests in tests/experience/test_tenant_isolation.py):
- Protected: a tenant cannot list, get, reward, export or purge another tenant's calls, steps, sessions
  or rewards, even when it knows their ids (it gets NotFoundError, as for ids that do not exist).
- Protected: ids and keys are looked up through the same keyed mapping the store writes them with, so an
  id holding PII (an e-mail as session id) is never stored raw yet still finds its rows.
- NOT protected: which tenant a caller is. The gateway authenticates and picks the tenant; operators'
  CLI commands (`experience stats`) see all tenants by design.
"""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from collections import defaultdict
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from sqlalchemy import delete, func, select

from blacksoil.contracts import TENANT_ID_MAX
from blacksoil.errors import ConfigError, NotFoundError
from blacksoil.experience.models import ModelCall, ReplayCursor, ReplayItem, Reward, Task, Tenant, ToolStep
from blacksoil.experience.models import Session as SessionRow

if TYPE_CHECKING:
    from blacksoil.experience.store import ExperienceStore

RewardSource = Literal["agentscore", "demonstration", "feedback", "tool_error"]
REWARD_SOURCES = ("agentscore", "demonstration", "feedback", "tool_error")
"""agentscore: a task checker's verdict; demonstration: a scripted (oracle) or uploaded solution, also checked;
feedback: a user's rating (`POST /v1/feedback`); tool_error: a failed tool step (-1, written by the store)."""
SPLITS = ("train", "val", "test")


def _call_dict(r: ModelCall) -> dict[str, Any]:
    return {
        "kind": "model_call", "event_id": r.event_id, "tenant": r.tenant_id, "session_id": r.session_id,
        "request_id": r.request_id, "task_id": r.task_id, "model": r.model, "adapter_version": r.adapter_version,
        "messages": r.messages, "tools": r.tools, "response": r.response, "prompt_token_ids": r.prompt_token_ids,
        "completion_token_ids": r.completion_token_ids, "completion_logprobs": r.completion_logprobs,
        "timings": r.timings, "usage": r.usage, "error": r.error, "metadata": r.meta, "created_at": r.created_at,
    }


def _step_dict(r: ToolStep) -> dict[str, Any]:
    return {
        "kind": "tool_step", "event_id": r.event_id, "tenant": r.tenant_id, "session_id": r.session_id,
        "request_id": r.request_id, "task_id": r.task_id, "tool_name": r.tool_name, "tool_arguments": r.arguments,
        "response": r.result, "policy_verdict": r.policy_verdict, "error": r.error, "timings": r.timings,
        "metadata": r.meta, "created_at": r.created_at,
    }


def _reward_dict(r: Reward) -> dict[str, Any]:
    return {"id": r.id, "session_id": r.session_id, "event_id": r.event_id, "scope": r.scope, "value": r.value,
            "source": r.source, "detail": r.detail, "created_at": r.created_at}


class TenantStore:
    """Tenant-scoped API over an ExperienceStore."""

    def __init__(self, store: ExperienceStore, tenant_id: str) -> None:
        if not tenant_id or len(tenant_id) > TENANT_ID_MAX:
            shown = tenant_id if len(tenant_id) <= 40 else tenant_id[:40] + "…"
            raise ConfigError(f"tenant id {shown!r} ({len(tenant_id)} characters) is invalid; use 1-{TENANT_ID_MAX}")
        self.store = store
        # Stored ids holding PII are keyed hashes (see Anonymizer.pseudonymize_id): look up by the same mapping.
        self.tenant_id = self._id(tenant_id) or tenant_id

    def _id(self, value: str | None) -> str | None:
        return self.store.anonymizer.pseudonymize_id(value)

    def model_calls(self, session_id: str | None = None, limit: int | None = None) -> list[dict[str, Any]]:
        q = select(ModelCall).where(ModelCall.tenant_id == self.tenant_id).order_by(ModelCall.created_at)
        if session_id is not None:
            q = q.where(ModelCall.session_id == self._id(session_id))
        with self.store.session() as s:
            return [_call_dict(r) for r in s.scalars(q.limit(limit))]

    def tool_steps(self, session_id: str | None = None, limit: int | None = None) -> list[dict[str, Any]]:
        q = select(ToolStep).where(ToolStep.tenant_id == self.tenant_id).order_by(ToolStep.created_at)
        if session_id is not None:
            q = q.where(ToolStep.session_id == self._id(session_id))
        with self.store.session() as s:
            return [_step_dict(r) for r in s.scalars(q.limit(limit))]

    def get_event(self, event_id: str) -> dict[str, Any]:
        """One model call or tool step of this tenant; NotFoundError otherwise (also for other tenants' ids)."""
        with self.store.session() as s:
            call = s.scalars(select(ModelCall).where(ModelCall.tenant_id == self.tenant_id,
                                                     ModelCall.event_id == event_id)).first()
            if call is not None:
                return _call_dict(call)
            step = s.scalars(select(ToolStep).where(ToolStep.tenant_id == self.tenant_id,
                                                    ToolStep.event_id == event_id)).first()
            if step is not None:
                return _step_dict(step)
        raise NotFoundError(f"event {event_id!r} not found for tenant {self.tenant_id!r}; list events with "
                            "`blacksoil experience export`")

    def find_call(self, call_id: str) -> dict[str, Any]:
        """A model call by event id or by gateway request id."""
        with self.store.session() as s:
            call = s.scalars(select(ModelCall).where(ModelCall.tenant_id == self.tenant_id,
                                                     ModelCall.request_id == self._id(call_id))).first()
            if call is not None:
                return _call_dict(call)
        return self.get_event(call_id)

    def sessions(self) -> list[dict[str, Any]]:
        q = select(SessionRow).where(SessionRow.tenant_id == self.tenant_id).order_by(SessionRow.created_at)
        with self.store.session() as s:
            return [{"session_id": r.id, "task_id": r.task_id, "agent": r.agent, "created_at": r.created_at}
                    for r in s.scalars(q)]

    def has_session(self, session_id: str) -> bool:
        with self.store.session() as s:
            return s.get(SessionRow, (self.tenant_id, self._id(session_id))) is not None

    def rewards(self, session_id: str | None = None) -> list[dict[str, Any]]:
        q = select(Reward).where(Reward.tenant_id == self.tenant_id).order_by(Reward.id)
        if session_id is not None:
            q = q.where(Reward.session_id == self._id(session_id))
        with self.store.session() as s:
            return [_reward_dict(r) for r in s.scalars(q)]

    def rewards_after(self, last_id: int, limit: int = 10_000) -> list[dict[str, Any]]:
        """This tenant's rewards with an id above `last_id`, oldest first (how replay reads new ones)."""
        q = (select(Reward).where(Reward.tenant_id == self.tenant_id, Reward.id > last_id)
             .order_by(Reward.id).limit(limit))
        with self.store.session() as s:
            return [_reward_dict(r) for r in s.scalars(q)]

    def add_reward(self, value: float, source: str, *, session_id: str | None = None, call_id: str | None = None,
                   detail: dict[str, Any] | None = None, dedup_key: str | None = None) -> bool:
        """Record a reward on one of this tenant's sessions or calls; False when dedup_key was seen."""
        if source not in REWARD_SOURCES:
            raise ConfigError(f"reward source {source!r} is unknown; use one of {', '.join(REWARD_SOURCES)}")
        if not -1e6 < value < 1e6 or value != value:
            raise ConfigError(f"reward value {value!r} is not a finite number in (-1e6, 1e6)")
        if (session_id is None) == (call_id is None):
            raise ConfigError("give exactly one of session_id or call_id for a reward")
        event_id = None
        if call_id is not None:
            call = self.find_call(call_id)
            event_id, session_id = call["event_id"], call["session_id"]
        elif session_id is not None:
            if not self.has_session(session_id):
                raise NotFoundError(f"session {session_id!r} not found for tenant {self.tenant_id!r}")
            session_id = self._id(session_id)
        clean_detail, _ = self.store.anonymizer.anonymize_value(detail or {})
        return self.store.add_reward_row({
            "tenant_id": self.tenant_id, "session_id": session_id, "event_id": event_id,
            "scope": "call" if call_id else "session", "value": float(value), "source": source,
            "dedup_key": self.store.anonymizer.hash_key(dedup_key) if dedup_key else uuid.uuid4().hex,
            "detail": clean_detail, "created_at": time.time(),
        })

    def set_task_split(self, task_id: str, split: str) -> None:
        if split not in SPLITS:
            raise ConfigError(f"split {split!r} is unknown; use one of {', '.join(SPLITS)}")
        with self.store.session() as s:
            if s.get(Tenant, self.tenant_id) is None:
                s.add(Tenant(id=self.tenant_id, created_at=time.time()))
                s.flush()
            row = s.get(Task, (self.tenant_id, task_id))
            if row is None:
                s.add(Task(tenant_id=self.tenant_id, id=task_id, split=split))
            else:
                row.split = split

    def task_splits(self) -> dict[str, str]:
        with self.store.session() as s:
            return {t.id: t.split for t in s.scalars(select(Task).where(Task.tenant_id == self.tenant_id))}

    def stats(self) -> dict[str, int]:
        out: dict[str, int] = {}
        with self.store.session() as s:
            for name, table in (("sessions", SessionRow), ("model_calls", ModelCall), ("tool_steps", ToolStep),
                                ("rewards", Reward), ("tasks", Task)):
                out[name] = int(s.scalar(select(func.count()).select_from(table)
                                         .where(table.tenant_id == self.tenant_id)) or 0)
        return out

    def purge(self) -> dict[str, int]:
        """Delete every row of this tenant (right to erasure); returns rows deleted per table."""
        out: dict[str, int] = {}
        with self.store.session() as s:
            for name, table in (("replay_items", ReplayItem), ("replay_cursors", ReplayCursor), ("rewards", Reward),
                                ("model_calls", ModelCall), ("tool_steps", ToolStep), ("sessions", SessionRow),
                                ("tasks", Task)):
                res = s.execute(delete(table).where(table.tenant_id == self.tenant_id))
                out[name] = int(res.rowcount or 0)  # type: ignore[attr-defined]
            s.execute(delete(Tenant).where(Tenant.id == self.tenant_id))
        return out

    def export(self, path: Path, fmt: str = "jsonl") -> int:
        """Write this tenant's calls and steps (with their rewards) to JSONL or Parquet; returns rows written."""
        if fmt not in ("jsonl", "parquet"):
            raise ConfigError(f"export format {fmt!r} is unknown; use jsonl or parquet")
        rows = self.model_calls() + self.tool_steps()
        rewards = defaultdict(list)
        for r in self.rewards():
            rewards[r["event_id"] or r["session_id"]].append(r)
        for row in rows:
            row["rewards"] = rewards.get(row["event_id"], []) + rewards.get(row["session_id"] or "", [])
        rows.sort(key=lambda r: r["created_at"])
        path.parent.mkdir(parents=True, exist_ok=True)
        if fmt == "jsonl":
            with path.open("w") as f:
                for row in rows:
                    f.write(json.dumps(row) + "\n")
        else:
            import pyarrow as pa
            import pyarrow.parquet as pq

            # Nested JSON goes in as strings so every row shares one flat schema.
            flat = [{k: (json.dumps(v) if isinstance(v, dict | list) else v) for k, v in row.items()} for row in rows]
            cols = sorted({k for row in flat for k in row})
            table = pa.table({c: [row.get(c) for row in flat] for c in cols}) if flat else pa.table({})
            pq.write_table(table, path)
        return len(rows)

    def trajectories(self) -> list[dict[str, Any]]:
        """One summary per session for replay: task, total reward, failure, policy version, content hash."""
        calls = self.model_calls()
        steps = self.tool_steps()
        rewards = self.rewards()
        by_session: dict[str, dict[str, Any]] = {}
        for ev in calls + steps:
            sid = ev["session_id"] or ev["event_id"]
            t = by_session.setdefault(sid, {"session_id": sid, "task_id": ev["task_id"], "reward": 0.0,
                                            "failed": False, "adapter_version": None, "created_at": ev["created_at"],
                                            "_h": hashlib.sha256(), "n_events": 0})
            t["n_events"] += 1
            t["created_at"] = max(t["created_at"], ev["created_at"])
            t["failed"] = t["failed"] or bool(ev["error"])
            if ev["kind"] == "model_call" and ev["adapter_version"] is not None:
                t["adapter_version"] = ev["adapter_version"]
            content = {k: ev.get(k) for k in ("messages", "response", "tool_name", "tool_arguments")}
            t["_h"].update(json.dumps(content, sort_keys=True).encode())
        for r in rewards:
            sid = r["session_id"] or r["event_id"]
            if sid in by_session:
                by_session[sid]["reward"] += r["value"]
                if r["source"] == "tool_error":
                    by_session[sid]["failed"] = True
        out = []
        for t in by_session.values():
            t["content_hash"] = t.pop("_h").hexdigest()
            out.append(t)
        return out
