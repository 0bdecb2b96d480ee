"""One tool call through the runtime: parse, loop check, policy decision, execution, result, experience event.

A side-effecting call is marked `started` (committed) before it runs, so a crash can never make it run twice.

What the runtime protects, and what it does not (tests in tests/agents/):
- Protects: no call runs without a policy decision with its arguments; denied calls do not run and the model is
  only shown tools some policy may permit — test_agent_loop::test_policy_denies_and_hides_forbidden_tools,
  test_agent_loop::test_unknown_agent_role_gets_nothing_state_changing.
- Protects: a call needing approval runs only after a human approved exactly it (the agent cannot approve its
  own call; a denial is final) — test_agent_loop::test_approval_pauses_then_approve_runs_the_call,
  test_agent_loop::test_small_transfer_needs_no_approval_and_cannot_approve_itself,
  test_agent_loop::test_denied_call_never_runs_and_the_model_is_told.
- Protects: the rule of two is enforced from the run's persisted flags —
  test_agent_loop::test_rule_of_two_requires_approval.
- Protects: a side effect is never repeated by a crash and resume —
  test_agent_durable::test_sigkill_mid_tool_resumes_without_repeating_side_effects; two processes never drive
  one run at once — test_agent_durable::test_a_live_driver_keeps_others_out.
- Protects: a tool marked sandboxed never runs in the agent's process (no host files, network or environment) —
  test_agent_sandboxed::test_sandboxed_python_tool_sees_nothing_of_the_host.
- Protects: a model repeating the same call is stopped before the repeat runs —
  test_agent_loop::test_loop_detection_stops_before_the_repeat_runs.
- Does not protect: against prompt injection inside what the policies permit — tool results reach the model
  verbatim; `untrusted_output` only feeds the rule of two.
- Does not protect: tools not marked sandboxed run in the agent's process with its privileges; MCP servers run
  as their own processes (stdio servers get only the spec's `env` plus the SDK's minimal defaults), not sandboxed.
- Does not protect: the answer text (no output filtering).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

from blacksoil.agents.config import AgentsConfig
from blacksoil.agents.guard import Guard
from blacksoil.agents.multi import FinalAnswer, Handoff, WorkerPaused
from blacksoil.agents.spec import AgentSpec
from blacksoil.agents.store import CallRecord, RunRecord, RunStore
from blacksoil.agents.toolbox import Toolbox
from blacksoil.agents.tools import Tool, ToolContext, result_text
from blacksoil.agents.tracing import execute_tool, tool_ended
from blacksoil.contracts import ExperienceEvent, ExperienceSink
from blacksoil.errors import BlacksoilError

#: What handling a batch of calls can end in: None (continue), or (status, reason[, answer]).
Outcome = tuple[str, ...] | None
_WAIT = "wait"


class CallExecutor:
    """Handles the tool calls of one assistant message, in order, resuming any a crash interrupted."""

    def __init__(
        self, store: RunStore, guard: Guard, toolbox: Toolbox, config: AgentsConfig, sink: ExperienceSink | None
    ) -> None:
        self.store = store
        self.guard = guard
        self.toolbox = toolbox
        self.config = config
        self.sink = sink

    def handle(
        self, run: RunRecord, agent: AgentSpec, pending: list[dict[str, Any]], elapsed: Callable[[], float]
    ) -> Outcome:
        """Decide and execute each pending call; pause when any waits for a human."""
        waiting = False
        for tc in pending:
            outcome = self._one(self.store.get_run(run.run_id), agent, tc)
            if outcome == _WAIT:
                waiting = True
            elif outcome is not None:
                return outcome if isinstance(outcome, tuple) else None
        self.store.update_run(run.run_id, wall_s=elapsed())
        return ("paused", "awaiting_approval") if waiting else None

    def _one(self, run: RunRecord, agent: AgentSpec, tc: dict[str, Any]) -> tuple[str, ...] | str | None:
        cid, name = tc["id"], tc.get("function", {}).get("name", "")
        rec = self.store.get_call(run.run_id, cid)
        if rec is None:
            return self._first_time(run, agent, tc, cid, name)
        tool = self.toolbox.registry(self.toolbox.team.get(rec.agent)).get(rec.name)
        assert tool is not None, f"recorded call {cid} names tool {rec.name} that the agent lost"
        if rec.status == "awaiting_approval":
            # The human's decision lives in the security layer's approval store; checking again reads it, and
            # hard denies (and changed plant facts) still apply to an approved call.
            return self._decide_and_run(run, self.toolbox.team.get(rec.agent), tool, rec)
        if rec.status == "started":
            # Killed mid-call: rerun only what is safe to rerun; a plain side effect may already have happened.
            if tool.reentrant or not tool.flags.state_changing:
                return self._execute(run, agent, tool, rec)
            msg = ("error: this call was interrupted by a crash and its outcome is unknown; it was not retried to "
                   "avoid doing it twice. Check the state before calling it again.")  # fmt: skip
            self._answer(run, rec, "failed", msg, tool)
            return None
        raise AssertionError(f"call {cid} is {rec.status} but has no result message")

    def _first_time(self, run: RunRecord, agent: AgentSpec, tc: dict[str, Any], cid: str, name: str) -> Any:
        args, problem = _parse_arguments(tc.get("function", {}).get("arguments"))
        reg = self.toolbox.registry(agent)
        tool = reg.get(name)
        if problem is None and tool is None:
            problem = f"unknown tool {name!r}; available tools: {', '.join(reg.names()) or 'none'}"
        rec = CallRecord(run.run_id, cid, f"{run.run_id}:{cid}", run.steps, agent.name, name or "?", args, "blocked")
        if problem is not None:
            self._answer(run, rec, "blocked", f"error: {problem}", tool)
            return None
        assert tool is not None
        if self._repeats(run.run_id, name, args) >= self.config.loop_repeat_limit - 1:
            rec.verdict = "deny"
            rec.reasons = [
                f"loop detected: {name} called {self.config.loop_repeat_limit} times with the same arguments"
            ]
            self._answer(run, rec, "blocked", f"error: {rec.reasons[0]}", tool)
            return ("stopped", "loop_detected")
        return self._decide_and_run(run, agent, tool, rec)

    def _decide_and_run(self, run: RunRecord, agent: AgentSpec, tool: Tool, rec: CallRecord) -> Any:
        facts = self.toolbox.facts(agent, run.run_id)
        verdict, reasons = self.guard.check(
            agent=agent.name, tenant=run.tenant, user=run.user_id, tool=tool, arguments=rec.arguments,
            run_id=run.run_id, call_key=rec.idempotency_key, run_flags=run.flags, facts=facts,
        )  # fmt: skip
        rec.verdict, rec.reasons = verdict, reasons
        if verdict == "deny":
            self._answer(run, rec, "blocked", f"denied: {'; '.join(reasons)}", tool)
            return None
        if verdict == "approval_required":
            if rec.status != "awaiting_approval":
                rec.status = "awaiting_approval"
                self.store.put_call(rec)
                self._emit(run, rec, tool, "approval_required", None, 0.0)
            return _WAIT
        return self._execute(run, agent, tool, rec)

    def _repeats(self, run_id: str, name: str, args: dict[str, Any]) -> int:
        key = _canonical(args)
        return sum(1 for c in self.store.calls(run_id) if c.name == name and _canonical(c.arguments) == key)

    def _execute(self, run: RunRecord, agent: AgentSpec, tool: Tool, rec: CallRecord) -> Any:
        rec.status, rec.started_at = "started", time.time()
        self.store.put_call(rec)  # write-ahead: committed before the side effect happens
        ctx = ToolContext(run.run_id, rec.call_id, rec.idempotency_key, agent.name)
        t0 = time.monotonic()
        status, handoff, final = "completed", None, None
        with execute_tool(tool.name, rec.call_id, tool.description) as span:
            try:
                value = self.guard.run_sandboxed(tool, rec.arguments, ctx) if tool.flags.sandboxed else tool.invoke(
                    rec.arguments, ctx)  # fmt: skip
            except WorkerPaused:
                return _WAIT
            except BlacksoilError as e:
                status, value = "failed", f"error: {e.message}"
            except Exception as e:  # a tool's bug is the model's information, not the run's crash
                status, value = "failed", f"error: {type(e).__name__}: {e}"
            tool_ended(span, status)
        if isinstance(value, Handoff):
            handoff, value = value.target, f"handed off to {value.target}"
        elif isinstance(value, FinalAnswer):
            final, value = value.text, "done"
        run_s = time.monotonic() - t0
        text = result_text(value)
        if status == "completed" and tool.name in agent.stop_at_tools:
            final = text
        self.guard.record_execution(
            agent=agent.name, tenant=run.tenant, user=run.user_id, tool=tool, arguments=rec.arguments,
            run_id=run.run_id, call_key=rec.idempotency_key, ok=status == "completed",
            detail=_detail(tool, value, run_s),
        )  # fmt: skip
        flags = self.guard.observe(run.flags, tool)
        with self.store.transaction():
            self._record(run, rec, status, text)
            self.store.update_run(run.run_id, flags=flags)
            if handoff is not None:
                self.store.update_run(run.run_id, agent=handoff)
            if final is not None:
                self.store.update_run(run.run_id, status="completed", reason="answer", answer=final)
        self._emit(run, rec, tool, rec.verdict or "allow", text, run_s, status)
        return ("completed", "answer", final) if final is not None else None

    def _answer(self, run: RunRecord, rec: CallRecord, status: str, text: str, tool: Tool | None) -> None:
        """Close a call without running it (blocked, denied, interrupted) and tell the model why."""
        with self.store.transaction():
            self._record(run, rec, status, text)
        self._emit(run, rec, tool, rec.verdict or status, text, 0.0, status)

    def _record(self, run: RunRecord, rec: CallRecord, status: str, text: str) -> None:
        rec.status, rec.result, rec.finished_at = status, text, time.time()
        self.store.put_call(rec)
        self.store.append_message(
            run.run_id, rec.agent, {"role": "tool", "tool_call_id": rec.call_id, "name": rec.name, "content": text}
        )

    def _emit(self, run: RunRecord, rec: CallRecord, tool: Tool | None, verdict: str, text: str | None,
              run_s: float, status: str | None = None) -> None:  # fmt: skip
        if self.sink is None:
            return
        self.sink.emit(
            ExperienceEvent(
                kind="tool_step", tenant=run.tenant, session_id=run.run_id, request_id=rec.call_id,
                tool_name=rec.name, tool_arguments=rec.arguments, response={"content": text},
                policy_verdict=verdict, timings={"run_s": run_s},
                error=text if status in ("failed", "blocked") else None,
                metadata={"agent": rec.agent, "step": rec.step, "status": status or rec.status,
                          "reasons": rec.reasons, "tool_source": tool.source if tool else None},
            )
        )  # fmt: skip


def _detail(tool: Tool, value: Any, run_s: float) -> dict[str, Any]:
    """What the audit keeps of an execution: time, and the sandbox's verdict for sandboxed tools."""
    d: dict[str, Any] = {"run_s": round(run_s, 4), "sandboxed": tool.flags.sandboxed}
    if tool.flags.sandboxed and isinstance(value, dict) and "verdict" in value:
        d["sandbox_verdict"] = value["verdict"]
    return d


def _parse_arguments(raw: Any) -> tuple[dict[str, Any], str | None]:
    if isinstance(raw, dict):
        return raw, None
    if raw is None or raw == "":
        return {}, None
    try:
        args = json.loads(raw)
    except (TypeError, json.JSONDecodeError) as e:
        return {}, f"tool arguments are not valid JSON ({e}); send a JSON object"
    if not isinstance(args, dict):
        return {}, f"tool arguments must be a JSON object, got {type(args).__name__}"
    return args, None


def _canonical(arguments: dict[str, Any]) -> str:
    return json.dumps(arguments, sort_keys=True, separators=(",", ":"))
