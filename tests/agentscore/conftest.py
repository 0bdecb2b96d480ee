"""Fixtures of the AgentScore tests: a scripted OpenAI-compatible chat server (the model is the outside world).

Only the model is scripted; the runner, tools, plant, checkers and the openai SDK over HTTP are real.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import FastAPI

from blacksoil.distributed import free_port


class ScriptedChat:
    """Answers /v1/chat/completions from a queue of assistant messages and records each request."""

    def __init__(self) -> None:
        self.replies: list[dict[str, Any]] = []
        self.requests: list[dict[str, Any]] = []
        self.app = FastAPI()
        self.app.post("/v1/chat/completions")(self._complete)
        self.app.get("/health")(lambda: {"ok": True})

    async def _complete(self, body: dict[str, Any]) -> dict[str, Any]:
        self.requests.append(body)
        msg = self.replies.pop(0) if self.replies else {"role": "assistant", "content": "done"}
        return {"id": f"c{len(self.requests)}", "object": "chat.completion", "created": 0, "model": body["model"],
                "choices": [{"index": 0, "message": msg,
                             "finish_reason": "tool_calls" if msg.get("tool_calls") else "stop"}],
                "usage": {"prompt_tokens": 100, "completion_tokens": 10, "total_tokens": 110}}

    def tool_call(self, name: str, arguments: str) -> None:
        """Queue one assistant message calling a tool."""
        n = len(self.replies)
        self.replies.append({"role": "assistant", "content": None, "tool_calls": [
            {"id": f"call{n}", "type": "function", "function": {"name": name, "arguments": arguments}}]})

    def say(self, text: str) -> None:
        """Queue one plain assistant answer."""
        self.replies.append({"role": "assistant", "content": text})


@pytest.fixture
def scripted_chat() -> Iterator[tuple[ScriptedChat, str]]:
    """A running scripted server and its OpenAI base URL."""
    chat = ScriptedChat()
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(chat.app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            if httpx.get(url + "/health", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.05)
    yield chat, url + "/v1"
    server.should_exit = True
    thread.join(timeout=10)
