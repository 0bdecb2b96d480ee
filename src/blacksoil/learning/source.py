"""The learner's data source: the experience store, read through its tenant-scoped API.

Model calls are grouped by session into trajectories and joined with their rewards (task checkers, user
feedback, demonstrations) by the persistent replay index (`experience.replay_index`). Training sees only what the
anonymizer stored: where it dropped a call's token ids (the text held PII), the stored, anonymized text is
re-tokenized. Only tenants that opted in (`learning.train_tenants`, plus the learner's own practice tenant) are
ever read, and every draw says which tenants and which reward range it came from, so an adapter can record what
trained it.

Demonstrations (the AgentScore oracle's solutions of train tasks, or a user's) enter through the store too, under
the learner's tenant, as sessions with a `demonstration` reward.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from blacksoil.contracts import ExperienceEvent
from blacksoil.experience.replay_index import Draw, ReplayIndex
from blacksoil.experience.store import ExperienceStore
from blacksoil.learning.collect import Attempt
from blacksoil.learning.dataset import prompt_ids
from blacksoil.learning.demos import END
from blacksoil.learning.samples import TrainSample

SFT_MIN_REWARD = 1.0
"""SFT (rejection sampling) trains on items rewarded at least this much: successes and demonstrations."""

__all__ = ["Drawn", "StoreExperience", "completion_text"]


@dataclass
class Drawn:
    """What one draw from replay produced."""

    samples: list[TrainSample]
    items: dict[str, Draw] = field(default_factory=dict)
    """Replay item id (the samples' `trajectory`) → the draw."""
    coef: dict[str, float] = field(default_factory=dict)
    """Replay item id → the objective's coefficient of its samples (1 for SFT, the advantage for GRPO)."""
    retokenized: int = 0
    """Calls whose token ids the anonymizer had dropped, trained from their re-tokenized anonymized text."""

    def provenance(self) -> dict[str, Any]:
        """Which tenants' data, which sessions and which reward range trained on this draw."""
        draws = list(self.items.values())
        by_source: dict[str, int] = defaultdict(int)
        for s in self.samples:
            if s.trajectory in self.items:
                by_source[self.items[s.trajectory].source] += 1
        return {"tenants": sorted({d.tenant_id for d in draws}), "sessions": len(draws),
                "samples_by_source": dict(by_source), "retokenized_calls": self.retokenized,
                "replay_items": sorted(int(k) for k in self.items)}


def completion_text(call: dict[str, Any]) -> str | None:
    """The engine text a stored response came from (the gateway's tool grammar emits JSON), with end of turn;
    None when the stored arguments are no longer JSON (an anonymizer replacement inside a number, say)."""
    message = call.get("response") or {}
    if call.get("tools"):
        tool_calls = message.get("tool_calls") or []
        if tool_calls:
            fn = tool_calls[0]["function"]
            args = fn.get("arguments") or "{}"
            try:
                parsed = json.loads(args) if isinstance(args, str) else args
            except json.JSONDecodeError:
                return None  # teaching a broken call would be worse than skipping it
            return json.dumps({"name": fn["name"], "arguments": parsed}) + END
        return json.dumps({"answer": message.get("content") or ""}) + END
    return (message.get("content") or message.get("text") or "") + END


def engine_ids(call: dict[str, Any], end_id: int) -> tuple[int, ...]:
    """The stored completion ids of a call, closed with the end-of-turn token where the engine stopped on it.

    llama.cpp generates that token (its usage counts it) but reports no log-probability entry, hence no id, for
    it; without it a learned attempt would never teach the model to stop where the demonstrations (and the
    re-tokenized text, see completion_text) do."""
    ids = tuple(int(i) for i in call["completion_token_ids"])
    finish = (call.get("metadata") or {}).get("finish_reason")
    generated = int((call.get("usage") or {}).get("completion_tokens") or 0)
    stopped = finish in ("stop", "tool_calls") or (finish is None and generated == len(ids) + 1)
    return (*ids, end_id) if ids and stopped and ids[-1] != end_id else ids


class StoreExperience:
    """Experience of the opted-in tenants, from the store, through prioritized replay that persists there."""

    def __init__(self, store: ExperienceStore, index: ReplayIndex, tenants: Sequence[str], own_tenant: str,
                 tokenizer: Any, max_len: int | None = None) -> None:
        self.store, self.index, self.tokenizer, self.max_len = store, index, tokenizer, max_len
        self.end_id = int(tokenizer.convert_tokens_to_ids(END))
        self.own_tenant = own_tenant
        self.tenants = tuple(dict.fromkeys((own_tenant, *tenants)))
        # Stored tenant ids (keyed hashes when an id holds PII) → their scoped views; nothing else is ever read.
        self._views = {v.tenant_id: v for v in (store.tenant(t) for t in self.tenants)}

    def sync(self) -> int:
        """Take the rewards that arrived since the last sync into replay; returns items added or updated."""
        return self.index.sync(self.tenants)

    def add_demonstrations(self, attempts: Sequence[Attempt]) -> int:
        """Store demonstration attempts (anonymized, idempotent) under the learner's tenant; returns new sessions."""
        view = self.store.tenant(self.own_tenant)
        new = 0
        for a in attempts:
            sid = "demo-" + hashlib.sha256(json.dumps([a.task_id, [c.response or c.completion_token_ids
                                                                   for c in a.calls]], default=str)
                                           .encode()).hexdigest()[:16]
            events = [replace(c, tenant=self.own_tenant, session_id=sid,
                              event_id=uuid.uuid5(uuid.NAMESPACE_URL, f"{sid}/{i}").hex,
                              metadata={**c.metadata, "task_id": a.task_id, "demonstration": True})
                      for i, c in enumerate(a.calls)]
            self.store.ingest_many(events)
            new += view.add_reward(a.reward, "demonstration", session_id=sid,
                                   detail={"task_id": a.task_id, "suite": a.suite, "passed": a.passed},
                                   dedup_key=f"demonstration:{sid}")
        return new

    def draw(self, draws: int, objective: str, policy_version: int) -> Drawn:
        """Sample `draws` trajectories and build the objective's samples from their stored calls."""
        # SFT learns only from successes: a failure drawn would be a wasted draw, and how many failures the round's
        # collection happened to add would decide which demonstrations get trained on.
        picked = self.index.sample(draws, policy_version, self.tenants,
                                   min_reward=None if objective == "grpo" else SFT_MIN_REWARD)
        weights: dict[int, float] = defaultdict(float)
        for d in picked:
            weights[d.item_id] = max(weights[d.item_id], d.weight)
        out = Drawn([])
        unique = {d.item_id: d for d in picked}
        groups = self.index.group_rewards([d.task_id for d in unique.values() if d.task_id])
        for d in unique.values():
            key = str(d.item_id)
            out.items[key] = d
            out.coef[key] = self._coefficient(d, objective, groups)
            if out.coef[key] == 0.0:
                continue
            samples, retokenized = self._samples(d, weights[d.item_id], out.coef[key])
            out.samples += samples
            out.retokenized += retokenized
        return out

    @staticmethod
    def _coefficient(d: Draw, objective: str, groups: dict[tuple[str, str], list[float]]) -> float:
        """SFT: 1 for a success (rejection sampling), else 0. GRPO: the reward's z-score within its task group
        (a demonstration counts as a success of its group)."""
        if objective != "grpo":
            return 1.0 if d.reward >= SFT_MIN_REWARD else 0.0
        rewards = groups.get((d.tenant_id, d.task_id or ""), [])
        if len(rewards) < 2:
            return 0.0
        mean = sum(rewards) / len(rewards)
        std = (sum((r - mean) ** 2 for r in rewards) / len(rewards)) ** 0.5
        return 0.0 if std < 1e-6 else (d.reward - mean) / (std + 1e-6)

    def _samples(self, d: Draw, weight: float, coef: float) -> tuple[list[TrainSample], int]:
        """The item's trainable calls as samples, and how many of them were re-tokenized."""
        view = self._views.get(d.tenant_id)
        if view is None:  # not an opted-in tenant (the index also holds other learners' tenants)
            return [], 0
        calls = view.model_calls(session_id=d.session_id) if view.has_session(d.session_id) else \
            [c for c in (view.get_event(d.session_id),) if c["kind"] == "model_call"]
        out, retokenized = [], 0
        for call in calls:
            if call["error"] or not call["response"]:
                continue
            event = ExperienceEvent(kind="model_call", messages=call["messages"], tools=call["tools"],
                                    metadata=call["metadata"] or {})
            prompt = prompt_ids(self.tokenizer, event)
            stored = call["completion_token_ids"]
            text = None if stored else completion_text(call)
            if not stored and text is None:
                continue
            ids = engine_ids(call, self.end_id) if stored else tuple(
                self.tokenizer(text, add_special_tokens=False).input_ids)
            if not ids or (self.max_len is not None and len(prompt) + len(ids) > self.max_len):
                continue
            retokenized += not stored
            logprobs = call["completion_logprobs"]
            behaviour = None
            if stored and logprobs and len(logprobs) == len(stored):  # the appended end of turn's is unknown (NaN)
                behaviour = tuple(float(x) for x in logprobs) + (float("nan"),) * (len(ids) - len(stored))
            out.append(TrainSample(prompt, ids, reward=d.reward, weight=weight, group=d.task_id, advantage=coef,
                                   trajectory=str(d.item_id), behaviour_logprobs=behaviour))
        return out, retokenized

    def update_priorities(self, trajectory_nll: dict[str, float], drawn: Drawn) -> int:
        """A trained item's new priority is its loss: what the model still gets wrong is drawn more."""
        values = {int(k): v * abs(drawn.coef.get(k, 1.0)) for k, v in trajectory_nll.items() if k in drawn.items}
        return self.index.update_priorities(values)
