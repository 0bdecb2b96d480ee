"""The AgentScore agent backed by the real agent runtime (blacksoil.agents): policies, approvals, durable runs.

Each task becomes a one-agent spec whose tool set acts on the task's own environment; the checker then reads it.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from blacksoil.agents.launcher import RuntimeSetup
from blacksoil.agents.loop import AgentRuntime, RunResult
from blacksoil.agents.model import ModelClient, ModelReply
from blacksoil.agents.spec import AgentSpec, AgentTeam, Limits
from blacksoil.agents.store import CallRecord
from blacksoil.agentscore.config import AgentscoreConfig
from blacksoil.contracts import ExperienceSink
from blacksoil.errors import ConfigError, RetryableError

from .agents import Step, ToolBox
from .environments import Environment, ManufacturingEnv
from .runtime_tools import lend
from .tasks import Task

#: Who stands in for the human when approvals are `auto` (an agent can never approve its own call).
AUTO_APPROVER = "agentscore-auto-approver"
APPROVALS = ("none", "auto")
POLICY_FILE = Path(__file__).parent / "policies" / "agentscore.cedar"
#: The runtime's own loop guard also records `deny`; it is not a policy violation.
_LOOP_PREFIX = "loop detected"


class _MeteredClient(ModelClient):
    """The runtime's model client, also keeping each reply's tokens and latency for AgentScore's metrics."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.replies: list[ModelReply] = []

    def chat(self, *args: Any, **kwargs: Any) -> ModelReply:
        reply = super().chat(*args, **kwargs)
        self.replies.append(reply)
        return reply


class RuntimeAgent:
    """Runs each task as an agent-runtime run; counts policy denials and approval requests as violations.

    `approvals="none"`: a call needing a human stays pending, the run ends paused and the task is judged on the
    state as it is (so tasks that need an approved call fail). `approvals="auto"`: a stand-in approver approves
    every pending call and the run resumes (at most `max_approval_rounds` times); hard denies still hold.

    `setup` is the runtime's settings (home, agents, security); `config` AgentScore's (None = its defaults).
    Each run's experience goes to a sink `new_sink()` makes (the platform's, from the caller holding the root
    settings); without it the runs record none, and rewards then find no session to join.
    """

    name = "runtime"

    def __init__(self, base_url: str, model: str, *, setup: RuntimeSetup, config: AgentscoreConfig | None = None,
                 new_sink: Callable[[], ExperienceSink] | None = None, step_budget: int | None = None,
                 approvals: str | None = None, tenant: str | None = None, max_approval_rounds: int = 5) -> None:
        cfg = config or AgentscoreConfig()
        self.setup, self.new_sink = setup, new_sink
        self.approvals = approvals or cfg.runtime_approvals
        if self.approvals not in APPROVALS:
            raise ConfigError(f"approvals {self.approvals!r} is unknown; use one of {', '.join(APPROVALS)}")
        self.base_url, self.model = base_url, model
        self.step_budget = step_budget or cfg.step_budget
        self.tenant = tenant or cfg.runtime_tenant
        self.max_approval_rounds = max_approval_rounds

    def spec(self, task: Task, env: Environment, key: str) -> AgentSpec:
        """The one-agent spec of a task: its allowed tools on its environment, the benchmark roles and policy."""
        if isinstance(env, ManufacturingEnv):
            toolset, options = "manufacturing", {"seed": task.initial.seed, "overrides": dict(task.initial.overrides)}
        else:
            toolset, options = "agentscore_env", {"key": key}
        return AgentSpec(
            name="agentscore", model=self.model, system_prompt=env.system_prompt, tools=[toolset],
            toolset_options={toolset: options}, include_tools=list(task.tools), tenant=self.tenant,
            roles=["plant_operator", "benchmark_agent"], policies=[str(POLICY_FILE)],
            limits=Limits(max_steps=min(self.step_budget, task.max_steps)),
        )  # fmt: skip

    def run(self, task: Task, env: Environment, tools: ToolBox) -> None:
        """One run in a fresh runtime (agents.launcher.open_runtime); the final state goes back into `env`."""
        from blacksoil.agents.launcher import open_runtime

        run_id = f"as-{uuid.uuid4().hex[:12]}"
        traj = tools.trajectory
        traj.session_id = run_id  # the runtime sends it as X-Session-Id: the session the gateway records
        team = AgentTeam(agents=[self.spec(task, env, run_id)], source=f"agentscore:{task.id}")
        with open_runtime(team, self.setup, base_url=self.base_url, model=self.model, new_sink=self.new_sink,
                          client_class=_MeteredClient) as runtime:
            client = runtime.model
            assert isinstance(client, _MeteredClient)  # open_runtime built it from client_class
            asked: dict[str, CallRecord] = {}
            with lend(run_id, env):
                result = runtime.run(task.instruction, run_id=run_id, user="agentscore")
                result = self._approve(runtime, result, asked)
            self._record(traj, client, runtime.store.calls(run_id), asked, result)
        if isinstance(env, ManufacturingEnv):
            self._load_plant(env, self.setup, run_id)
        if result.status == "failed":
            # The runner records the episode as an agent error (the endpoint failed after the runtime's retries).
            raise RetryableError(f"runtime run {run_id} failed ({result.reason}): {result.answer or 'no detail'}; "
                                 f"check the endpoint {self.base_url}")

    def _approve(self, runtime: AgentRuntime, result: RunResult, asked: dict[str, CallRecord]) -> RunResult:
        """Note every call that asked for a human; with `auto` approvals, approve them and resume."""
        for _ in range(self.max_approval_rounds + 1):
            for c in result.pending:
                asked.setdefault(c.idempotency_key, c)
            if result.status != "paused" or self.approvals != "auto":
                return result
            for c in result.pending:
                runtime.decide(c.run_id, c.call_id, approve=True, by=AUTO_APPROVER, note="AgentScore auto-approval")
            result = runtime.resume(runtime.root(result.run_id))
        return result

    @staticmethod
    def _load_plant(env: ManufacturingEnv, setup: RuntimeSetup, run_id: str) -> None:
        import json

        from blacksoil.factories.manufacturing.plant import Plant

        path = setup.toolsets_dir / "manufacturing" / f"{run_id}.json"
        # No file means the run never touched the plant: the task's initial plant is the final state.
        if path.exists():
            env.plant = Plant(json.loads(path.read_text()), home=setup.home, config=setup.manufacturing)
            path.unlink()  # the checker has it now; scoring runs would otherwise pile up plant files

    def _record(self, traj: Any, client: _MeteredClient, calls: list[CallRecord], asked: dict[str, CallRecord],
                result: RunResult) -> None:
        """The run as AgentScore steps: model calls with usage, tool calls with errors, policy violations."""
        for r in client.replies:
            traj.steps.append(Step("model", self.model, result=r.message.get("content"), latency_s=r.latency_s,
                                   prompt_tokens=int(r.usage.get("prompt_tokens", 0)),
                                   completion_tokens=int(r.usage.get("completion_tokens", 0))))
        denied = 0
        for c in calls:
            policy_denied = c.verdict == "deny" and not any(x.startswith(_LOOP_PREFIX) for x in c.reasons)
            denied += policy_denied
            # Denials and approval requests are policy violations, not tool errors: count each once.
            error = c.result if c.status == "failed" or (c.status == "blocked" and not policy_denied) else None
            latency = (c.finished_at - c.started_at) if c.finished_at and c.started_at else 0.0
            traj.steps.append(Step("tool", c.name, dict(c.arguments), result=c.result, error=error,
                                   latency_s=latency))
        traj.policy_violations = denied + len(asked)
        traj.answer = (result.answer or "") if result.status == "completed" else ""
        traj.stopped = {"answer": "answered", "max_steps": "step_budget", "loop_detected": "loop"}.get(
            result.reason or "", result.reason or result.status)
        traj.steps.append(Step("answer", result=traj.answer))
        traj.run = {"run_id": result.run_id, "status": result.status, "reason": result.reason,
                    "policy_denied": denied, "approval_required": len(asked), "approvals": self.approvals,
                    "wall_s": round(result.wall_s, 4), "finished_at": time.time()}
