"""Settings of the agents pillar.

One frozen model, grouped under the root settings object (blacksoil.config.Settings.agents).
"""

from __future__ import annotations

from pydantic import field_validator

from blacksoil.configbase import ComponentConfig


class AgentsConfig(ComponentConfig):
    """Agent runtime: default loop limits, the model endpoint and the durable run store."""

    max_steps: int = 12
    """Default cap on model calls per run (count); a spec's `limits.max_steps` overrides it."""
    max_tokens: int = 20000
    """Default cap on prompt + completion tokens per run (tokens)."""
    max_wall_s: float = 600.0
    """Default cap on a run's wall-clock time (seconds), summed over resumes."""
    loop_repeat_limit: int = 3
    """A run stops as `loop_detected` when the same tool call (name + arguments) is made this many times (count)."""
    completion_max_tokens: int = 256
    """max_tokens sent with each chat completion request (tokens)."""
    temperature: float = 0.0
    """Sampling temperature sent to the model (unitless); 0 makes runs reproducible."""
    request_timeout_s: float = 120.0
    """Timeout of one chat completion request to the gateway (seconds)."""
    gateway_url: str | None = None
    """OpenAI-compatible base URL (ending in /v1) of a running gateway; None starts an embedded one."""
    api_key: str = "none"
    """API key sent to the gateway; with platform.api_keys set it decides the tenant the calls count for."""
    store_file: str = "agents/runs.sqlite"
    """Run store path relative to settings().home (file name)."""
    max_string_chars: int = 200
    """maxLength added to tool string parameters that have none (characters): bounds constrained decoding."""
    tool_timeout_s: float = 60.0
    """Timeout of one MCP tool call (seconds)."""

    @field_validator("max_steps", "max_tokens", "loop_repeat_limit", "completion_max_tokens", "max_string_chars")
    @classmethod
    def _positive(cls, v: int) -> int:
        if v < 1:
            raise ValueError(f"must be >= 1, got {v}; use a positive count")
        return v

    @field_validator("max_wall_s", "request_timeout_s", "tool_timeout_s")
    @classmethod
    def _positive_s(cls, v: float) -> float:
        if v <= 0:
            raise ValueError(f"must be > 0 seconds, got {v}")
        return v
