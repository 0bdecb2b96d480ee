"""A scripted OpenAI-compatible chat server for deterministic control-flow tests of the agent loop.

It fakes the outside world (the model) only: replies follow a script indexed by the conversation's step.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

#: One scripted reply: {"content": "..."} or {"calls": [["tool", {args}], ...]} (optionally "usage", "finish").
Step = dict[str, Any]


class ScriptedModel:
    """Replies by script: the key is a marker found in the system prompt ("*" matches any), the index is the
    number of assistant messages already in the conversation; past the end the last step repeats."""

    def __init__(self, script: dict[str, list[Step]] | list[Step]) -> None:
        self.script = script if isinstance(script, dict) else {"*": script}
        self.requests: list[dict[str, Any]] = []
        self._lock = threading.Lock()

    def reply(self, body: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            self.requests.append(body)
        messages = body["messages"]
        system = messages[0]["content"] if messages and messages[0]["role"] == "system" else ""
        key = next((k for k in self.script if k != "*" and k in system), "*")
        steps = self.script[key]
        step = steps[min(sum(1 for m in messages if m["role"] == "assistant"), len(steps) - 1)]
        message: dict[str, Any] = {"role": "assistant", "content": step.get("content")}
        if "calls" in step:
            message["tool_calls"] = [
                {"id": f"model_{i}", "type": "function", "function": {"name": n, "arguments": json.dumps(a)}}
                for i, (n, a) in enumerate(step["calls"])
            ]
        usage = step.get("usage", {"prompt_tokens": 10, "completion_tokens": 5})
        return {
            "id": "chatcmpl-scripted",
            "object": "chat.completion",
            "model": body.get("model") or "scripted",
            "choices": [
                {
                    "index": 0,
                    "message": message,
                    "finish_reason": step.get("finish", "tool_calls" if "calls" in step else "stop"),
                }
            ],
            "usage": {**usage, "total_tokens": sum(usage.values())},
        }


@contextmanager
def serve(model: ScriptedModel) -> Iterator[str]:
    """Serve `model` on 127.0.0.1 (free port); yields the OpenAI base URL (…/v1)."""

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            out = json.dumps(model.reply(body)).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(out)))
            self.end_headers()
            self.wfile.write(out)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    finally:
        server.shutdown()
        server.server_close()
