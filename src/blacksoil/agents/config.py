"""Settings of the agents pillar.

One frozen model, grouped under the root settings object (blacksoil.config.Settings.agents).
"""

from __future__ import annotations

from pydantic import PositiveFloat, PositiveInt

from blacksoil.configbase import ComponentConfig

__all__ = ["AgentsConfig"]


class AgentsConfig(ComponentConfig):
    """Agent runtime: default loop limits, the model endpoint and the durable run store."""

    max_steps: PositiveInt = 12
    """Default cap on model calls per run (count); a spec's `limits.max_steps` overrides it."""
    max_tokens: PositiveInt = 20000
    """Default cap on prompt + completion tokens per run (tokens)."""
    max_wall_s: PositiveFloat = 600.0
    """Default cap on a run's wall-clock time (seconds), summed over resumes."""
    loop_repeat_limit: PositiveInt = 3
    """A run stops as `loop_detected` when the same tool call (name + arguments) is made this many times (count)."""
    completion_max_tokens: PositiveInt = 256
    """max_tokens sent with each chat completion request (tokens)."""
    temperature: float = 0.0
    """Sampling temperature sent to the model (unitless); 0 makes runs reproducible."""
    request_timeout_s: PositiveFloat = 120.0
    """Timeout of one chat completion request to the gateway (seconds)."""
    gateway_url: str | None = None
    """OpenAI-compatible base URL (ending in /v1) of a running gateway; None starts an embedded one."""
    api_key: str = "none"
    """API key sent to the gateway; with platform.api_keys set it decides the tenant the calls count for."""
    store_file: str = "agents/runs.sqlite"
    """Run store path relative to the home folder (file name)."""
    max_string_chars: PositiveInt = 200
    """maxLength added to tool string parameters that have none (characters): bounds constrained decoding."""
    tool_timeout_s: PositiveFloat = 60.0
    """Timeout of one MCP tool call (seconds)."""
    api_toolsets: tuple[str, ...] = ()
    """Module tool sets (beyond the shipped short names) that specs registered over HTTP may name (module paths)."""
    api_stream_poll_s: PositiveFloat = 0.2
    """How often an open event stream of the HTTP API looks for new run events (seconds)."""

