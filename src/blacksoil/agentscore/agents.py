"""Agents AgentScore can run: the trajectory they produce, the tool box they act through, oracle and null.

Every tool call goes through `ToolBox.call`, so steps, latencies and tool errors are recorded the same way.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

from blacksoil.errors import BlacksoilError, InternalError
from blacksoil.factories.toolspec import ToolSpec, to_json

from .environments import Environment
from .tasks import Task

__all__ = ["Agent", "NullAgent", "OracleAgent", "Step", "ToolBox", "Trajectory"]


@dataclass
class Step:
    """One step: a model call, a tool call or the final answer."""

    kind: str  # "model" | "tool" | "answer"
    name: str = ""
    args: dict[str, Any] = field(default_factory=dict)
    result: Any = None
    error: str | None = None
    latency_s: float = 0.0
    prompt_tokens: int = 0
    completion_tokens: int = 0


@dataclass
class Trajectory:
    """Everything an agent did on one task."""

    steps: list[Step] = field(default_factory=list)
    answer: str = ""
    stopped: str = "answered"  # answered | step_budget | loop | error | awaiting_approval | max_tokens …
    session_id: str | None = None
    """The session the model endpoint saw (X-Session-Id), when the agent sends one: rewards are stored on it."""
    policy_violations: int = 0
    """Tool calls the security policies denied or sent to a human (the runtime agent reports them)."""
    run: dict[str, Any] = field(default_factory=dict)
    """Agent-specific facts of the run (the runtime agent: run id, status, reason, approvals)."""

    def to_dict(self) -> dict[str, Any]:
        """JSON form for the run file and the learner."""
        return asdict(self)


class ToolBox:
    """The task's allowed tools; records each call as a Step in the trajectory."""

    def __init__(self, env: Environment, allowed: list[str], trajectory: Trajectory) -> None:
        by_name = {t.name: t for t in env.tools()}
        missing = [n for n in allowed if n not in by_name]
        if missing:
            raise InternalError(f"task allows tools {missing} that the environment lacks; fix the task file")
        self.specs: list[ToolSpec] = [by_name[n] for n in allowed]
        self._by_name = {t.name: t for t in self.specs}
        self.trajectory = trajectory

    def call(self, name: str, args: dict[str, Any]) -> tuple[Any, str | None]:
        """Run one tool; returns (result, error message). Errors are returned, not raised: the agent reads them."""
        t0 = time.perf_counter()
        step = Step("tool", name, dict(args) if isinstance(args, dict) else {"_raw": args})
        try:
            if name not in self._by_name:
                raise BlacksoilError(f"tool {name!r} is not available; use one of {', '.join(self._by_name)}")
            step.result = json.loads(to_json(self._by_name[name].call(args)))
        except BlacksoilError as e:
            step.error = e.message
        step.latency_s = time.perf_counter() - t0
        self.trajectory.steps.append(step)
        return step.result, step.error


    def reject(self, name: str, raw: str, why: str) -> str:
        """Record a call that could not even be parsed (e.g. invalid JSON arguments); returns the error."""
        error = f"{name}: {why}; send the arguments as one JSON object matching the tool's schema"
        self.trajectory.steps.append(Step("tool", name, {"_raw": raw[:500]}, error=error))
        return error


class Agent(Protocol):
    """Anything that can act on a task through a tool box and give a final answer."""

    name: str

    def run(self, task: Task, env: Environment, tools: ToolBox) -> None:
        """Act on the task; set `tools.trajectory.answer` at the end."""
        ...


def _resolve_refs(value: Any, results: list[Any]) -> Any:
    """Oracle args may say "$steps[i].key": the value a previous tool call returned."""
    if isinstance(value, str) and value.startswith("$steps["):
        idx, _, key = value[len("$steps["):].partition("].")
        out = results[int(idx)]
        for part in key.split(".") if key else []:
            out = out[int(part)] if isinstance(out, list) else out[part]
        return out
    if isinstance(value, dict):
        return {k: _resolve_refs(v, results) for k, v in value.items()}
    if isinstance(value, list):
        return [_resolve_refs(v, results) for v in value]
    return value


class OracleAgent:
    """Runs the task's scripted solution; scoring 1.0 proves every task solvable and its checker right."""

    name = "oracle"

    def run(self, task: Task, env: Environment, tools: ToolBox) -> None:
        """Call the scripted tools in order, then format the answer template over their results."""
        results: list[Any] = []
        for step in task.oracle:
            if step.tool is not None:
                result, error = tools.call(step.tool, _resolve_refs(step.args, results))
                if error:
                    raise InternalError(f"oracle step {step.tool} of task {task.id} failed: {error}; fix the task")
                results.append(result)
            else:
                assert step.answer is not None
                tools.trajectory.answer = step.answer.format(steps=results)
                tools.trajectory.steps.append(Step("answer", result=tools.trajectory.answer))


class NullAgent:
    """Answers without acting; scoring near 0 proves no task passes by doing nothing."""

    name = "null"

    def run(self, task: Task, env: Environment, tools: ToolBox) -> None:
        """Give up politely."""
        tools.trajectory.answer = "I cannot help with that."
        tools.trajectory.steps.append(Step("answer", result=tools.trajectory.answer))
