"""Multi-agent tools: handoff to another agent, supervisor/worker sub-runs, and the final answer.

They are ordinary tools to the model and the policy engine; the loop acts on the signals they return.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from blacksoil.agents.tools import Tool, ToolContext, ToolFlags


@dataclass(frozen=True)
class Handoff:
    """Control passes to `target`, which continues the same conversation with its own prompt and tools."""

    target: str
    reason: str


@dataclass(frozen=True)
class FinalAnswer:
    """The agent is done; `text` is the run's answer."""

    text: str


class WorkerPaused(Exception):
    """A worker's sub-run waits for human approval, so its supervisor pauses too."""

    def __init__(self, child_run_id: str, pending: list[Any]) -> None:
        super().__init__(f"worker run {child_run_id} awaits approval of {len(pending)} call(s)")
        self.child_run_id = child_run_id
        self.pending = pending


def handoff_tool(target: str) -> Tool:
    """`handoff_to_<target>(reason)`: give the conversation to another agent."""

    def invoke(arguments: dict[str, Any], ctx: ToolContext) -> Handoff:
        return Handoff(target, str(arguments.get("reason", "")))

    return Tool(
        name=f"handoff_to_{target}",
        description=f"Hand the task over to the {target} agent, which continues the conversation.",
        parameters={
            "type": "object",
            "properties": {"reason": {"type": "string", "description": "Why the other agent should take over."}},
            "required": ["reason"],
            "additionalProperties": False,
        },
        flags=ToolFlags(),
        invoke=invoke,
        source=f"handoff:{target}",
        reentrant=True,
    )


def worker_tool(worker: str, run_worker: Callable[[str, str, ToolContext], str]) -> Tool:
    """`ask_<worker>(task)`: run the worker agent on a sub-task and return its answer.

    `run_worker(worker, task, ctx)` starts or resumes the sub-run keyed by the call's idempotency key,
    so a supervisor killed mid-call resumes its worker instead of starting it again.
    """

    def invoke(arguments: dict[str, Any], ctx: ToolContext) -> str:
        return run_worker(worker, str(arguments.get("task", "")), ctx)

    return Tool(
        name=f"ask_{worker}",
        description=f"Give a sub-task to the {worker} agent and get its answer.",
        parameters={
            "type": "object",
            "properties": {"task": {"type": "string", "description": "The sub-task, stated completely."}},
            "required": ["task"],
            "additionalProperties": False,
        },
        flags=ToolFlags(),
        invoke=invoke,
        source=f"worker:{worker}",
        reentrant=True,
    )


def final_answer_tool() -> Tool:
    """`final_answer(answer)`: end the run; offered when a spec sets tool_choice=required."""

    def invoke(arguments: dict[str, Any], ctx: ToolContext) -> FinalAnswer:
        return FinalAnswer(str(arguments.get("answer", "")))

    return Tool(
        name="final_answer",
        description="Finish the task and give the final answer to the user.",
        parameters={
            "type": "object",
            "properties": {"answer": {"type": "string", "description": "The answer to the task."}},
            "required": ["answer"],
            "additionalProperties": False,
        },
        flags=ToolFlags(),
        invoke=invoke,
        source="runtime",
        reentrant=True,
    )
