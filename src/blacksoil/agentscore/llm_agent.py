"""The built-in tool-calling agent for any OpenAI-compatible endpoint: model → tool calls → results → model.

A small loop with a step budget; it stays until the agents pillar's runtime can be plugged in instead.
"""

from __future__ import annotations

import json
import time
from typing import Any

from blacksoil.agentscore.config import AgentscoreConfig
from blacksoil.errors import RetryableError, UserError
from blacksoil.factories.toolspec import to_json

from .agents import Step, ToolBox
from .environments import Environment
from .tasks import Task

__all__ = ["OpenAIToolAgent"]


def _stuck(steps: list[Step], repeats: int = 3) -> bool:
    """The same tool call `repeats` times in a row: its answer will not change, more calls only burn the budget."""
    calls = [s for s in steps if s.kind == "tool"][-repeats:]
    return len(calls) == repeats and all((s.name, s.args) == (calls[0].name, calls[0].args) for s in calls)


class OpenAIToolAgent:
    """Drives a chat model with `tools=[...]` through the OpenAI SDK.

    `config` holds the loop limits and sampling (agentscore section of the settings; None = its defaults).
    `temperature` overrides the config's and `user` tags every call with a session id: the learner collects
    attempts this way (the gateway groups an attempt's model calls by it). Subclasses that need another request
    override `complete`, the one place a model call is made.
    """

    name = "llm"

    def __init__(self, base_url: str, model: str, api_key: str | None = None, step_budget: int | None = None, *,
                 config: AgentscoreConfig | None = None, temperature: float | None = None,
                 user: str | None = None) -> None:
        import openai

        self.config = cfg = config or AgentscoreConfig()
        self.model = model
        self.step_budget = step_budget or cfg.step_budget
        self.temperature = cfg.temperature if temperature is None else temperature
        self.user = user
        # The same key the agent runtime sends (agents.api_key): with platform API keys it picks the tenant the
        # calls count for; "none" is that setting's default (no keys configured).
        self.client = openai.OpenAI(base_url=base_url, api_key=api_key or "none", timeout=cfg.request_timeout_s,
                                    max_retries=1)

    def complete(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]]) -> Any:
        """One chat completion with the tools; endpoint failures become RetryableError / UserError."""
        import openai

        extra: dict[str, Any] = {"user": self.user} if self.user is not None else {}
        if tools:
            extra["parallel_tool_calls"] = self.config.parallel_tool_calls
        try:
            return self.client.chat.completions.create(
                model=self.model, messages=messages, tools=tools,  # type: ignore[arg-type]
                max_tokens=self.config.max_tokens, temperature=self.temperature, **extra,
            )
        except openai.APIConnectionError as e:
            raise RetryableError(f"endpoint {self.client.base_url} unreachable ({e}); start the gateway "
                                 "(blacksoil serve) or pass --endpoint") from None
        except openai.APIStatusError as e:
            raise UserError(f"endpoint {self.client.base_url} answered {e.status_code}: {e.message}") from None

    def run(self, task: Task, env: Environment, tools: ToolBox) -> None:
        """Loop until the model answers without tool calls or the step budget is spent."""
        traj = tools.trajectory
        messages: list[dict[str, Any]] = [
            {"role": "system", "content": env.system_prompt},
            {"role": "user", "content": task.instruction},
        ]
        specs = [t.openai() for t in tools.specs]
        for _ in range(min(self.step_budget, task.max_steps)):
            if _stuck(traj.steps):
                traj.stopped = "loop"
                return
            t0 = time.perf_counter()
            resp = self.complete(messages, specs)
            usage = resp.usage
            msg = resp.choices[0].message
            traj.steps.append(Step("model", self.model, result=msg.content,
                                   latency_s=time.perf_counter() - t0,
                                   prompt_tokens=getattr(usage, "prompt_tokens", 0) or 0,
                                   completion_tokens=getattr(usage, "completion_tokens", 0) or 0))
            calls = msg.tool_calls or []
            if not calls:
                traj.answer = msg.content or ""
                traj.steps.append(Step("answer", result=traj.answer))
                return
            messages.append({"role": "assistant", "content": msg.content or "", "tool_calls": [
                {"id": c.id, "type": "function", "function": {"name": c.function.name,
                                                              "arguments": c.function.arguments}}
                for c in calls]})
            for c in calls:
                result: Any = None
                error: str | None
                try:
                    args = json.loads(c.function.arguments or "{}")
                except json.JSONDecodeError as e:
                    error = tools.reject(c.function.name, c.function.arguments, f"invalid JSON ({e})")
                else:
                    result, error = tools.call(c.function.name, args)
                content = to_json({"error": error}) if error else to_json(result)
                messages.append({"role": "tool", "tool_call_id": c.id, "content": content})
        traj.stopped = "step_budget"
