"""Settings of the agentscore pillar.

One frozen model, grouped under the root settings object (blacksoil.config.Settings.agentscore).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, NonNegativeFloat, PositiveInt

from blacksoil.configbase import ComponentConfig

__all__ = ["AgentscoreConfig"]


class AgentscoreConfig(ComponentConfig):
    """Settings of the AgentScore benchmark: the model agent's loop limits and the cost price table."""

    step_budget: PositiveInt = 12
    """Most model calls the built-in agent makes per task before it must stop (count)."""
    max_tokens: PositiveInt = 128
    """Most output tokens per model call (tokens; a tool call or a brief answer needs < 60)."""
    temperature: NonNegativeFloat = 0.0
    """Sampling temperature of the model agent (0 = greedy)."""
    parallel_tool_calls: bool = False
    """Whether the model agent lets the model make several tool calls in one turn. Off: the default model is ~1.8x
    faster per task with one call per turn, and the learner's demonstrations are single calls (see docs/learning.md);
    outside clients get OpenAI's default (on) from the gateway."""
    request_timeout_s: NonNegativeFloat = 300.0
    """Timeout of one model call to the endpoint (seconds)."""
    price_prompt_usd_per_mtok: NonNegativeFloat = 0.02
    """Default price of prompt tokens (USD per million tokens) for models not in model_prices."""
    price_output_usd_per_mtok: NonNegativeFloat = 0.06
    """Default price of output tokens (USD per million tokens) for models not in model_prices."""
    model_prices: dict[str, tuple[float, float]] = Field(default_factory=dict)
    """Per-model (prompt, output) prices in USD per million tokens, overriding the defaults."""
    price_cpu_usd_per_hour: NonNegativeFloat = 0.04
    """Price of one CPU core-hour (USD), charged on the CPU seconds a run uses."""

    runtime_approvals: Literal["none", "auto"] = "none"
    """Runtime agent: calls needing a human stay pending (`none`: the task is judged as left) or `auto`-approved."""
    runtime_tenant: str = "default"
    """Runtime agent: tenant of the runs (policy principal, audit) and of the rewards in the experience store."""
    record_rewards: bool = True
    """Store each episode's checker reward in the experience store when the agent reports its session id."""

    def prices(self, model: str) -> tuple[float, float]:
        """(prompt, output) USD per million tokens for a model."""
        return self.model_prices.get(model, (self.price_prompt_usd_per_mtok, self.price_output_usd_per_mtok))
