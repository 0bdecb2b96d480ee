"""The agent's view of a model: OpenAI-compatible chat completions with tools, over HTTP.

Works against the blacksoil gateway (constrained tool calls come back as standard `tool_calls`) or any upstream.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import httpx

from blacksoil.errors import ConfigError, RetryableError, UserError
from blacksoil.serving.tracing import trace_headers

__all__ = ["ModelClient", "ModelReply"]


@dataclass
class ModelReply:
    """One assistant message and what it cost."""

    message: dict[str, Any]
    """The assistant message: role, content, and tool_calls when the model called tools."""
    usage: dict[str, int] = field(default_factory=dict)
    """prompt_tokens and completion_tokens as reported by the server."""
    model: str | None = None
    latency_s: float = 0.0
    finish_reason: str | None = None
    """stop, tool_calls, or length (the reply was cut at max_tokens)."""

    @property
    def tool_calls(self) -> list[dict[str, Any]]:
        return list(self.message.get("tool_calls") or [])

    @property
    def tokens(self) -> int:
        return int(self.usage.get("prompt_tokens", 0)) + int(self.usage.get("completion_tokens", 0))


class ModelClient:
    """Chat completions against one OpenAI-compatible base URL (…/v1)."""

    def __init__(
        self,
        base_url: str,
        *,
        model: str | None = None,
        api_key: str = "none",
        timeout_s: float = 120.0,
        max_tokens: int = 256,
        temperature: float = 0.0,
        retries: int = 2,
    ) -> None:
        if not base_url.startswith(("http://", "https://")):
            raise ConfigError(
                f"model base URL {base_url!r} must start with http:// or https:// (e.g. http://127.0.0.1:8000/v1)"
            )
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.max_tokens = max_tokens
        self.temperature = temperature
        self.retries = retries
        self._http = httpx.Client(timeout=timeout_s, headers={"Authorization": f"Bearer {api_key}"})

    def chat(
        self,
        messages: list[dict[str, Any]],
        tools: list[dict[str, Any]],
        *,
        tool_choice: str = "auto",
        session_id: str | None = None,
        model: str | None = None,
        timeout_s: float | None = None,
    ) -> ModelReply:
        """One model call; transient failures (connection, 429, 5xx) are retried, then raise RetryableError."""
        body: dict[str, Any] = {
            "messages": messages,
            "max_tokens": self.max_tokens,
            "temperature": self.temperature,
        }
        if model or self.model:
            body["model"] = model or self.model
        if tools:
            body["tools"] = tools
            body["tool_choice"] = tool_choice
        if session_id:
            body["user"] = session_id
        headers = {"X-Session-Id": session_id} if session_id else {}
        headers.update(trace_headers())  # the gateway's chat span joins the caller's trace (W3C traceparent)
        last = ""
        for attempt in range(self.retries + 1):
            t0 = time.monotonic()
            try:
                r = self._http.post(f"{self.base_url}/chat/completions", json=body, headers=headers, timeout=timeout_s)
            except httpx.HTTPError as e:
                last = f"{type(e).__name__}: {e}"
            else:
                if r.status_code == 200:
                    return self._reply(r.json(), time.monotonic() - t0)
                last = f"HTTP {r.status_code}: {r.text[:300]}"
                if r.status_code < 500 and r.status_code != 429:
                    raise UserError(f"model server at {self.base_url} rejected the request: {last}")
                if attempt < self.retries:
                    time.sleep(float(r.headers.get("retry-after", 0.5 * 2**attempt)))
                    continue
            if attempt < self.retries:
                time.sleep(0.5 * 2**attempt)
        raise RetryableError(f"model server at {self.base_url} failed after {self.retries + 1} tries: {last}")

    def _reply(self, data: dict[str, Any], latency_s: float) -> ModelReply:
        try:
            choice = data["choices"][0]
            msg = dict(choice["message"])
        except (KeyError, IndexError, TypeError):
            raise RetryableError(f"model server at {self.base_url} returned no choices: {str(data)[:300]}") from None
        msg["role"] = "assistant"
        msg.setdefault("content", None)
        if not msg.get("tool_calls"):
            msg.pop("tool_calls", None)
        usage = {k: int(v) for k, v in (data.get("usage") or {}).items() if isinstance(v, int)}
        return ModelReply(message=msg, usage=usage, model=data.get("model"), latency_s=latency_s,
                          finish_reason=choice.get("finish_reason"))  # fmt: skip

    def close(self) -> None:
        self._http.close()
