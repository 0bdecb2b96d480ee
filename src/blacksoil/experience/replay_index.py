"""The persistent prioritized replay over the store: rewarded sessions of opted-in tenants, with priorities.

A session becomes a replay item once it has an outcome reward (a task checker's verdict, a demonstration's, or a
user's rating); tool errors mark it failed. The index, its priorities and how far each tenant's rewards have been
read live in the store's database (`replay_items`, `replay_cursors`), so a restarted learner keeps them; the sum
tree that samples them is an in-memory cache rebuilt from those rows. The index is bounded: past its capacity
the stalest items (oldest policy version, then oldest) are evicted.

Reads of tenant data go through `TenantStore` only; a tenant that is not passed to `sync` is never read.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from sqlalchemy import delete, func, select, update

from blacksoil.errors import NotFoundError
from blacksoil.experience.config import ExperienceConfig
from blacksoil.experience.models import ReplayCursor, ReplayItem, Tenant
from blacksoil.experience.priorities import trajectory_priorities
from blacksoil.experience.replay import PrioritizedReplay, policy_version_number
from blacksoil.experience.store import ExperienceStore

OUTCOME_SOURCES = ("agentscore", "demonstration", "feedback")
"""Reward sources that make a session trainable (tool errors only mark it failed)."""


@dataclass(frozen=True)
class Draw:
    """One sampled replay item: where its rows are, what it earned, and its importance weight."""

    item_id: int
    tenant_id: str
    session_id: str
    task_id: str | None
    reward: float
    source: str
    weight: float
    policy_version: int


class ReplayIndex:
    """Prioritized replay whose index and priorities persist in the experience store's database."""

    def __init__(self, store: ExperienceStore, cfg: ExperienceConfig, seed: int = 0) -> None:
        self.store, self.cfg, self.seed = store, cfg, seed
        self._rows: dict[int, _Row] = {}
        self._samples = 0

    def __len__(self) -> int:
        with self.store.session() as s:
            return int(s.scalar(select(func.count()).select_from(ReplayItem)) or 0)

    # -- reading new rewards ------------------------------------------------------------------------
    def sync(self, tenants: Sequence[str], now: float | None = None) -> int:
        """Read the rewards each tenant got since the last sync into the index; returns items added or updated."""
        now = time.time() if now is None else now
        changed = 0
        for tenant in tenants:
            changed += self._sync_tenant(tenant, now)
        if changed:
            self._evict()
        return changed

    def _sync_tenant(self, tenant: str, now: float) -> int:
        ts = self.store.tenant(tenant)
        tid = ts.tenant_id
        with self.store.session() as s:
            cursor = s.get(ReplayCursor, tid)
            last = cursor.last_reward_id if cursor else 0
        rewards = ts.rewards_after(last)
        if not rewards:
            return 0
        by_key: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for r in rewards:
            by_key[r["session_id"] or r["event_id"]].append(r)
        with self.store.session() as s:
            existing = {i.session_id: _as_dict(i) for i in s.scalars(select(ReplayItem).where(
                ReplayItem.tenant_id == tid, ReplayItem.session_id.in_(list(by_key))))}
        rows: list[dict[str, Any]] = []
        for key, rs in by_key.items():
            row = self._item(ts, key, rs, existing.get(key))
            if row is not None:
                rows.append(row)
        self._prioritize(tid, rows, now)
        with self.store.session() as s:
            if s.get(Tenant, tid) is None:  # the tenant was purged meanwhile: nothing of it may be kept
                return 0
            for row in rows:
                if row.get("id") is None:
                    row.pop("id", None)
                    s.add(ReplayItem(**row))
                else:
                    s.execute(update(ReplayItem).where(ReplayItem.id == row["id"]).values(
                        **{k: v for k, v in row.items() if k != "id"}))
            high = max(r["id"] for r in rewards)
            if cursor is None:
                s.add(ReplayCursor(tenant_id=tid, last_reward_id=high))
            else:
                s.execute(update(ReplayCursor).where(ReplayCursor.tenant_id == tid).values(last_reward_id=high))
        return len(rows)

    def _item(self, ts: Any, key: str, rewards: list[dict[str, Any]],
              old: dict[str, Any] | None) -> dict[str, Any] | None:
        """The row of session `key` after `rewards` (new ones); None when it is not (yet) trainable."""
        outcome = [r for r in rewards if r["source"] in OUTCOME_SOURCES]
        failed = any(r["source"] == "tool_error" for r in rewards) or bool(old and old["failed"])
        checker = [r for r in outcome if r["source"] != "feedback"]
        if checker:  # a checker's verdict outranks a rating
            reward, source = float(checker[-1]["value"]), checker[-1]["source"]
        elif outcome and not (old and old["source"] != "feedback"):
            reward, source = float(np.mean([r["value"] for r in outcome])), "feedback"
        elif old is not None:
            reward, source = old["reward"], old["source"]
        else:
            return None
        task = next((r["detail"].get("task_id") for r in reversed(rewards)
                     if isinstance(r.get("detail"), dict) and r["detail"].get("task_id")), None)
        if old is not None:
            return {**old, "task_id": task or old["task_id"], "reward": reward, "source": source,
                    "failed": int(failed), "last_reward_id": max(r["id"] for r in rewards)}
        calls = ts.model_calls(session_id=key) if ts.has_session(key) else _one_call(ts, rewards)
        if not calls:
            return None
        digest = hashlib.sha256()
        for c in calls:
            digest.update(json.dumps([c["messages"], c["response"]], sort_keys=True, default=str).encode())
        versions = [c["adapter_version"] for c in calls if c["adapter_version"]]
        return {"id": None, "tenant_id": ts.tenant_id, "session_id": key, "task_id": task or calls[0]["task_id"],
                "reward": reward, "source": source, "failed": int(failed or any(c["error"] for c in calls)),
                "policy_version": policy_version_number(versions[-1] if versions else None), "priority": 1.0,
                "content_hash": digest.hexdigest(), "first_reward_id": min(r["id"] for r in rewards),
                "last_reward_id": max(r["id"] for r in rewards), "created_at": max(c["created_at"] for c in calls),
                "sampled": 0}

    def _prioritize(self, tid: str, rows: list[dict[str, Any]], now: float) -> None:
        """Priorities from failure, advantage, learnability, recency and novelty within each task group."""
        if not rows:
            return
        tasks = {r["task_id"] for r in rows if r["task_id"]}
        with self.store.session() as s:
            peers = [{"session_id": i.session_id, "task_id": i.task_id, "reward": i.reward, "failed": bool(i.failed),
                      "created_at": i.created_at} for i in s.scalars(select(ReplayItem).where(
                          ReplayItem.tenant_id == tid, ReplayItem.task_id.in_(tasks)))] if tasks else []
        mine = {r["session_id"] for r in rows}
        group = [{**r, "failed": bool(r["failed"])} for r in rows] + [p for p in peers if p["session_id"] not in mine]
        prio = trajectory_priorities(group, now, self.cfg.recency_half_life_s, self.cfg.priority_weights)
        for r, p in zip(rows, prio[: len(rows)], strict=True):
            r["priority"] = float(p)

    def _evict(self) -> None:
        """Keep at most replay_capacity items: the stalest (oldest policy version, then oldest) go first."""
        with self.store.session() as s:
            n = int(s.scalar(select(func.count()).select_from(ReplayItem)) or 0)
            excess = n - self.cfg.replay_capacity
            if excess > 0:
                ids = list(s.scalars(select(ReplayItem.id).order_by(ReplayItem.policy_version, ReplayItem.created_at)
                                     .limit(excess)))
                s.execute(delete(ReplayItem).where(ReplayItem.id.in_(ids)))

    # -- sampling and priorities --------------------------------------------------------------------
    def sample(self, n: int, policy_version: int, tenants: Sequence[str],
               min_reward: float | None = None) -> list[Draw]:
        """Draw `n` items of `tenants` ∝ priority^α with importance weights (demonstrations never go stale);
        `min_reward`: only items rewarded at least this much (None = all), so that an objective that learns only
        from successes spends no draw on a failure."""
        tree = self._load(policy_version, tenants, min_reward)
        batch = tree.sample(n, policy_version)
        self._samples += 1
        out = []
        for key, w in zip(batch.keys, batch.weights, strict=True):
            row = self._rows[int(key)]
            out.append(Draw(row.id, row.tenant_id, row.session_id, row.task_id, row.reward, row.source, float(w),
                            row.policy_version))
        with self.store.session() as s:
            for item_id, count in zip(*np.unique([d.item_id for d in out], return_counts=True), strict=True):
                s.execute(update(ReplayItem).where(ReplayItem.id == int(item_id))
                          .values(sampled=ReplayItem.sampled + int(count)))
        return out

    def _load(self, policy_version: int, tenants: Sequence[str], min_reward: float | None) -> PrioritizedReplay:
        ids = {self.store.tenant(t).tenant_id for t in tenants}
        query = select(ReplayItem).where(ReplayItem.tenant_id.in_(ids))
        if min_reward is not None:
            query = query.where(ReplayItem.reward >= min_reward)
        with self.store.session() as s:
            rows = [_Row(**_as_dict(r)) for r in s.scalars(query)]
        if not rows:
            least = "" if min_reward is None else f" rewarded at least {min_reward:g}"
            raise NotFoundError(f"the replay index holds no rewarded session{least} of the opted-in tenants "
                                f"({', '.join(sorted(tenants)) or 'none'}); collect rewarded experience first")
        c = self.cfg
        tree = PrioritizedReplay(len(rows), c.replay_alpha, c.replay_beta0, c.replay_beta_steps,
                                 c.replay_max_staleness, c.replay_eps, self.seed + self._samples)
        # A demonstration is not something a model version did: it stays as fresh as the served version.
        versions = [policy_version if r.source == "demonstration" else r.policy_version for r in rows]
        tree.add_many([str(r.id) for r in rows], np.array(versions), np.array([r.priority for r in rows]))
        tree.steps = sum(r.sampled for r in rows) // max(1, len(rows))
        self._rows = {r.id: r for r in rows}
        return tree

    def update_priorities(self, values: dict[int, float]) -> int:
        """New priorities for items (e.g. a sample's training loss or |advantage|); returns how many exist."""
        found = 0
        with self.store.session() as s:
            for item_id, value in values.items():
                v = abs(float(value))
                if not np.isfinite(v):
                    continue
                res = s.execute(update(ReplayItem).where(ReplayItem.id == item_id).values(priority=v))
                found += int(res.rowcount or 0)  # type: ignore[attr-defined]
        return found

    def group_rewards(self, task_ids: Sequence[str]) -> dict[tuple[str, str], list[float]]:
        """(tenant, task) → rewards of every item of that task group (for group-relative advantages)."""
        out: dict[tuple[str, str], list[float]] = defaultdict(list)
        if not task_ids:
            return out
        with self.store.session() as s:
            for r in s.scalars(select(ReplayItem).where(ReplayItem.task_id.in_(set(task_ids)))):
                out[(r.tenant_id, r.task_id or "")].append(r.reward)
        return out

    def priorities(self) -> dict[tuple[str, str], float]:
        """(tenant, session) → priority of every item (tests, the console)."""
        with self.store.session() as s:
            return {(r.tenant_id, r.session_id): r.priority for r in s.scalars(select(ReplayItem))}


_COLUMNS = ("id", "tenant_id", "session_id", "task_id", "reward", "source", "failed", "policy_version", "priority",
            "content_hash", "first_reward_id", "last_reward_id", "created_at", "sampled")


@dataclass(frozen=True)
class _Row:
    """A replay_items row read out of its session (ORM objects expire when it commits)."""

    id: int
    tenant_id: str
    session_id: str
    task_id: str | None
    reward: float
    source: str
    failed: int
    policy_version: int
    priority: float
    content_hash: str | None
    first_reward_id: int
    last_reward_id: int
    created_at: float
    sampled: int


def _as_dict(item: ReplayItem) -> dict[str, Any]:
    return {c: getattr(item, c) for c in _COLUMNS}


def _one_call(ts: Any, rewards: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A rating on one call without a session: that call is the trajectory."""
    event_id = next((r["event_id"] for r in rewards if r["event_id"]), None)
    if event_id is None:
        return []
    try:
        ev = ts.get_event(event_id)
    except NotFoundError:
        return []
    return [ev] if ev["kind"] == "model_call" else []
