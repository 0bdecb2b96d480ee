"""The agent loop: model → tool calls → policy check → execution (sandboxed where marked) → results → model.

Every step commits to the RunStore before the next starts, so a killed run resumes from its last completed step.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from blacksoil.agents.calls import CallExecutor
from blacksoil.agents.config import AgentsConfig
from blacksoil.agents.guard import Guard
from blacksoil.agents.model import ModelClient, ModelReply
from blacksoil.agents.spec import AgentSpec, AgentTeam
from blacksoil.agents.store import CallRecord, RunRecord, RunStore
from blacksoil.agents.toolbox import Toolbox
from blacksoil.agents.tracing import invoke_agent, run_ended
from blacksoil.contracts import ExperienceSink
from blacksoil.errors import RetryableError, UserError
from blacksoil.factories.manufacturing.config import ManufacturingConfig
from blacksoil.security.config import SecurityConfig

__all__ = ["FINAL_STATUSES", "REASONS", "AgentRuntime", "RunResult", "policy_paths", "start_run"]

#: Why a run ended (or paused); every run gets exactly one.
REASONS = (
    "answer", "max_steps", "max_tokens", "max_wall_time", "loop_detected", "awaiting_approval", "model_error",
    "cancelled", "error",
)  # fmt: skip
FINAL_STATUSES = ("completed", "stopped", "failed")


@dataclass
class RunResult:
    """Where a run stands after `run`, `resume` or an approval."""

    run_id: str
    status: str
    """completed, stopped (a limit), failed (model error), or paused (awaiting approval)."""
    reason: str | None
    """The termination reason, one of REASONS."""
    answer: str | None
    steps: int
    tokens: int
    wall_s: float
    pending: list[CallRecord] = field(default_factory=list)
    """Calls waiting for a human (approve / deny them, then resume)."""

    def to_dict(self) -> dict[str, Any]:
        d = {k: v for k, v in self.__dict__.items() if k != "pending"}
        d["pending"] = [{"run_id": c.run_id, "call_id": c.call_id, "tool": c.name, "arguments": c.arguments,
                         "reasons": c.reasons} for c in self.pending]  # fmt: skip
        return d


class AgentRuntime:
    """Runs the agents of one team against a model, with their tools, policies and a durable store."""

    def __init__(
        self,
        team: AgentTeam,
        *,
        model: ModelClient,
        store: RunStore,
        config: AgentsConfig,
        guard: Guard | None = None,
        sink: ExperienceSink | None = None,
        security: SecurityConfig | None = None,
        toolsets_dir: Path | None = None,
        plant: tuple[Path, ManufacturingConfig] | None = None,
        audit_path: Path | None = None,
    ) -> None:
        """`security`: policy files and sandbox limits (None = the defaults); `toolsets_dir`: where stateful tool
        sets keep per-run state (None = `toolsets/` beside the run store); `plant`: (home, manufacturing
        settings) for the manufacturing tool set (None: plants without settings); `audit_path`: the audit
        log and approval store (None = `audit.sqlite` beside the run store)."""
        self.team = team
        self.model = model
        self.store = store
        self.config = config
        audit = audit_path if audit_path is not None else store.path.parent / "audit.sqlite"
        self.guard = guard or Guard(team.agents, policy_paths(team), audit, security=security)
        folder = toolsets_dir if toolsets_dir is not None else store.path.parent / "toolsets"
        self.toolbox = Toolbox(team, config, run_worker=self._run_worker, folder=folder, security=security,
                               plant=plant)
        self.calls = CallExecutor(store, self.guard, self.toolbox, config, sink)

    # -- public ---------------------------------------------------------------------------------------------------

    def run(self, task: str, *, agent: str | None = None, user: str | None = None, run_id: str | None = None,
            parent_run_id: str | None = None) -> RunResult:  # fmt: skip
        """Start a run of `agent` (default: the team's entry agent) on `task` and drive it until it ends or pauses."""
        return self.drive(self.start(task, agent=agent, user=user, run_id=run_id, parent_run_id=parent_run_id))

    def start(self, task: str, *, agent: str | None = None, user: str | None = None, run_id: str | None = None,
              parent_run_id: str | None = None) -> str:  # fmt: skip
        """Record a new run (task message committed) without driving it; `drive` then runs it. Returns its id."""
        return start_run(self.store, self.team, task, agent=agent, user=user, run_id=run_id,
                         parent_run_id=parent_run_id)  # fmt: skip

    def resume(self, run_id: str) -> RunResult:
        """Continue a run that was killed, stopped mid-way or paused (after its approvals are decided)."""
        return self.drive(run_id)

    def decide(self, run_id: str, call_id: str, *, approve: bool, by: str, note: str = "") -> None:
        """Record a human's approval or denial of a pending call; `resume` then acts on it."""
        rec = self.store.get_call(run_id, call_id)
        if rec is None or rec.status != "awaiting_approval":
            state = "does not exist" if rec is None else f"is {rec.status}"
            raise UserError(f"call {call_id!r} of run {run_id!r} {state}; only calls awaiting approval can be decided "
                            f"(see `blacksoil agent show {run_id}`)")  # fmt: skip
        self.guard.decide(rec.idempotency_key, approve=approve, by=by, note=note)

    def root(self, run_id: str) -> str:
        """The top supervisor run of a (worker) run: resuming it resumes the whole tree."""
        run = self.store.get_run(run_id)
        while run.parent_run_id is not None:
            run = self.store.get_run(run.parent_run_id)
        return run.run_id

    def close(self) -> None:
        self.toolbox.close()

    # -- the loop -------------------------------------------------------------------------------------------------

    def drive(self, run_id: str) -> RunResult:
        """Drive a run step by step until it answers, hits a limit or pauses for approval."""
        run = self.store.get_run(run_id)
        spec = self.team.get(run.agent)
        with invoke_agent(run.agent, run_id, spec.model or getattr(self.model, "model", None)) as span:
            result = self._drive(run_id)
            run_ended(span, result.status, result.reason, result.steps, result.tokens)
        return result

    def _drive(self, run_id: str) -> RunResult:
        run = self.store.get_run(run_id)
        if run.status in FINAL_STATUSES:
            return self._result(run)
        self.store.claim(run_id)
        clock = _Clock(run.wall_s)
        self.store.update_run(run_id, status="running", reason=None)
        while True:
            run = self.store.get_run(run_id)
            if run.status in FINAL_STATUSES:  # cancelled from outside (the HTTP API) between two steps
                return self._result(run)
            agent = self.team.get(run.agent)
            caller, pending = self._unanswered_calls(run_id)
            if pending:
                outcome = self.calls.handle(run, self.team.get(caller), pending, clock.elapsed)
                if outcome is not None:
                    return self._finish(run_id, clock, *outcome)
                continue
            if reason := self._over_budget(run, agent, clock):
                return self._finish(run_id, clock, "stopped", reason)
            try:
                reply = self._call_model(run, agent, clock)
            except RetryableError as e:
                return self._finish(run_id, clock, "failed", "model_error", e.message)
            if not reply.tool_calls:
                if self._must_retry(run, agent, reply):
                    continue
                return self._finish(run_id, clock, "completed", "answer", reply.message.get("content") or "")

    def _call_model(self, run: RunRecord, agent: AgentSpec, clock: _Clock) -> ModelReply:
        tools = self.toolbox.visible(agent, self.guard, run.user_id, run.run_id)
        messages = [{"role": "system", "content": agent.system_prompt}, *self.store.messages(run.run_id)]
        remaining = self._limit(agent, "max_wall_s") - clock.elapsed()
        reply = self.model.chat(
            messages, [t.openai_spec() for t in tools], tool_choice=self._tool_choice(agent, run),
            session_id=run.run_id, model=agent.model,
            timeout_s=max(1.0, min(self.config.request_timeout_s, remaining)),
        )  # fmt: skip
        step = run.steps + 1
        # Call ids are ours, not the model's: unique per run, so `<run_id>:<call_id>` is a sound idempotency key.
        for i, tc in enumerate(reply.tool_calls):
            tc["id"] = f"s{step}c{i}"
        if reply.tool_calls:
            reply.message["tool_calls"] = reply.tool_calls
        with self.store.transaction():
            self.store.append_message(run.run_id, agent.name, reply.message)
            self.store.update_run(run.run_id, steps=step, tokens=run.tokens + reply.tokens, wall_s=clock.elapsed())
        return reply

    def _must_retry(self, run: RunRecord, agent: AgentSpec, reply: ModelReply) -> bool:
        """A reply cut at max_tokens, or text where a tool call was required, is no answer: tell the model, retry.

        The retry is another step, so the step, token and wall budgets still bound it.
        """
        if reply.finish_reason != "length" and self._tool_choice(agent, run) != "required":
            return False
        why = "was cut off at the token limit" if reply.finish_reason == "length" else "did not call a tool"
        note = f"Your last reply {why}. Reply with one tool call with short, valid JSON arguments."
        self.store.append_message(run.run_id, agent.name, {"role": "user", "content": note})
        return True

    @staticmethod
    def _tool_choice(agent: AgentSpec, run: RunRecord) -> str:
        if agent.tool_choice == "required_first":
            return "required" if run.steps == 0 else "auto"
        return agent.tool_choice

    def _unanswered_calls(self, run_id: str) -> tuple[str, list[dict[str, Any]]]:
        """The agent that made the last assistant message and its tool calls without a result yet."""
        messages = self.store.messages_with_agents(run_id)
        for i in range(len(messages) - 1, -1, -1):
            agent, msg = messages[i]
            if msg["role"] == "assistant":
                answered = {m.get("tool_call_id") for _, m in messages[i + 1 :] if m["role"] == "tool"}
                return agent, [tc for tc in msg.get("tool_calls") or [] if tc["id"] not in answered]
        return "", []

    def _limit(self, agent: AgentSpec, name: str) -> Any:
        v = getattr(agent.limits, name)
        return v if v is not None else getattr(self.config, name)

    def _over_budget(self, run: RunRecord, agent: AgentSpec, clock: _Clock) -> str | None:
        if run.steps >= self._limit(agent, "max_steps"):
            return "max_steps"
        if run.tokens >= self._limit(agent, "max_tokens"):
            return "max_tokens"
        if clock.elapsed() >= self._limit(agent, "max_wall_s"):
            return "max_wall_time"
        return None

    def _finish(self, run_id: str, clock: _Clock, status: str, reason: str, answer: str | None = None) -> RunResult:
        if status != "paused" or answer is not None:
            self.store.update_run(run_id, status=status, reason=reason, answer=answer, wall_s=clock.elapsed())
        else:
            self.store.update_run(run_id, status=status, reason=reason, wall_s=clock.elapsed())
        return self._result(self.store.get_run(run_id))

    def _result(self, run: RunRecord) -> RunResult:
        pending = [c for c in self.store.calls(run.run_id) if c.status == "awaiting_approval"]
        for child in self.store.children(run.run_id):
            pending += [c for c in self.store.calls(child) if c.status == "awaiting_approval"]
        return RunResult(run.run_id, run.status, run.reason, run.answer, run.steps, run.tokens, run.wall_s, pending)

    # -- supervisor / worker ----------------------------------------------------------------------------------------

    def _run_worker(self, worker: str, task: str, ctx: Any) -> str:
        child = f"{ctx.run_id}.{ctx.call_id}"
        if self.store.has_run(child):
            result = self.drive(child)
        else:
            result = self.run(task, agent=worker, run_id=child, parent_run_id=ctx.run_id)
        if result.status == "paused":
            from blacksoil.agents.multi import WorkerPaused

            raise WorkerPaused(child, result.pending)
        if result.status != "completed":
            return f"worker {worker} stopped ({result.reason}) without an answer"
        return result.answer or ""


class _Clock:
    """Wall time of a run summed over its resumes."""

    def __init__(self, before_s: float) -> None:
        self.before_s = before_s
        self.t0 = time.monotonic()

    def elapsed(self) -> float:
        return self.before_s + time.monotonic() - self.t0


def start_run(store: RunStore, team: AgentTeam, task: str, *, agent: str | None = None, user: str | None = None,
              run_id: str | None = None, parent_run_id: str | None = None) -> str:  # fmt: skip
    """Record a new run of `team` with its task message, in one transaction (no model needed); returns its id."""
    if not task.strip():
        raise UserError("the task is empty; pass what the agent should do, e.g. 'schedule the open jobs'")
    spec = team.get(agent) if agent else team.entry
    rid = run_id or uuid.uuid4().hex[:12]
    with store.transaction():
        store.create_run(
            RunRecord(run_id=rid, team=team.model_dump(), agent=spec.name, task=task, tenant=spec.tenant,
                      user_id=user or "local", parent_run_id=parent_run_id)
        )  # fmt: skip
        store.append_message(rid, spec.name, {"role": "user", "content": task})
    return rid


def policy_paths(team: AgentTeam) -> list[Path]:
    """The extra Cedar files the team's specs name (each once)."""
    return [Path(f) for f in dict.fromkeys(p for a in team.agents for p in a.policies)]
