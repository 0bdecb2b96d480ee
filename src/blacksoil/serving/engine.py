"""Engines behind one interface: the embedded llama.cpp worker process and any OpenAI-compatible upstream.

Both speak OpenAI HTTP; the embedded one also takes llama.cpp extensions (`id_slot`, `timings`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import AsyncGenerator
from pathlib import Path
from typing import Any

import httpx

from blacksoil.contracts import AdapterVersion
from blacksoil.errors import BlacksoilError, ConfigError, InternalError, RetryableError, UserError
from blacksoil.serving.config import PREFILL_CHUNK_DEFAULT
from blacksoil.serving.models import validate_gguf


class EngineUnavailable(RetryableError):
    """The engine process is down, starting or restarting: the same call may succeed shortly."""


class EngineUnreachable(EngineUnavailable):
    """The request never reached the engine (it is restarting, or the connection was refused): the gateway may send
    it to another replica without running it twice."""


def _engine_error(status: int, text: str, url: str) -> BlacksoilError:
    """Map an engine's HTTP error answer to our exception tree (4xx → user error naming the field)."""
    try:
        err = json.loads(text).get("error", {})
    except (json.JSONDecodeError, AttributeError):
        err = {}
    msg = err.get("message") if isinstance(err, dict) else None
    msg = msg or text[:300] or f"HTTP {status}"
    etype = err.get("type") if isinstance(err, dict) else None
    if etype == "exceed_context_size_error" or ("context" in msg and "exceed" in msg):
        return UserError(
            f"the prompt does not fit the context window: {msg}; shorten `messages` or lower max_tokens",
            param="messages",
            code="context_length_exceeded",
        )
    if 400 <= status < 500:
        return UserError(f"the engine rejected the request: {msg}", code=str(etype or status))
    return EngineUnavailable(f"engine at {url} failed with HTTP {status}: {msg}; retry shortly")


class Engine:
    """An OpenAI-compatible engine reached over HTTP; subclasses say how it is started."""

    kind = "openai_upstream"
    #: True when the engine understands llama.cpp's `id_slot` / `timings` extensions.
    llamacpp_extensions = False

    def __init__(self, api_base: str, *, model_id: str | None = None, adapter: AdapterVersion | None = None,
                 timeout_s: float = 600.0) -> None:
        self.api_base = api_base.rstrip("/")
        self.model_id = model_id
        self.adapter = adapter
        self.timeout_s = timeout_s
        self.api_key: str | None = None
        """Bearer key the engine itself requires (the embedded one gets a fresh random key per start)."""
        self._clients: dict[int, httpx.AsyncClient] = {}

    # -- lifecycle (an upstream is started by someone else) --
    def start(self) -> None:
        """Make sure the engine answers; learn its model id."""
        try:
            r = httpx.get(self.api_base + "/models", headers=self.auth_headers(), timeout=10)
            r.raise_for_status()
            data = r.json().get("data") or []
        except (httpx.HTTPError, ValueError) as e:
            raise ConfigError(
                f"upstream {self.api_base!r} does not answer GET /models ({e}); pass the base URL of a running "
                "OpenAI-compatible server, e.g. http://host:8000/v1"
            ) from None
        if self.model_id is None and data:
            self.model_id = str(data[0]["id"])

    def stop(self) -> None:
        """Forget the HTTP clients (the upstream itself keeps running)."""
        self._clients.clear()

    def alive(self) -> bool:
        """Whether the engine can take requests right now."""
        return True

    def restart(self) -> None:
        """Bring a dead engine back (an upstream is someone else's: nothing to do)."""

    @property
    def root_url(self) -> str:
        """Base URL without the `/v1` suffix (for /health, /metrics of llama.cpp)."""
        return self.api_base.removesuffix("/v1")

    # -- requests --
    def _client(self) -> httpx.AsyncClient:
        # httpx clients are bound to the event loop that first used them.
        key = id(asyncio.get_running_loop())
        c = self._clients.get(key)
        if c is None:
            # Expire idle connections before the engine does (cpp-httplib closes them after 5 s), so a
            # request never goes out on a socket the server is closing.
            c = httpx.AsyncClient(timeout=httpx.Timeout(self.timeout_s, connect=5.0), headers=self.auth_headers(),
                                  limits=httpx.Limits(max_connections=256, max_keepalive_connections=64,
                                                      keepalive_expiry=2.0))
            self._clients[key] = c
        return c

    def auth_headers(self) -> dict[str, str]:
        """Headers a direct call to the engine needs (benchmarks compare the gateway with the bare engine)."""
        return {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}

    def probe(self, timeout_s: float) -> bool:
        """Whether the engine answers a small real request within `timeout_s` (blocking; call from a thread).

        GET /slots goes through llama.cpp's task queue, so a hung or stopped engine fails it even though its
        process is alive; it needs no free slot, so a busy engine passes.
        """
        path = "/slots" if self.llamacpp_extensions else "/v1/models"
        try:
            return httpx.get(self.root_url + path, headers=self.auth_headers(), timeout=timeout_s).status_code == 200
        except httpx.HTTPError:
            return False

    def _prepare(self, body: dict[str, Any]) -> dict[str, Any]:
        body = dict(body)
        if self.model_id is not None:
            body["model"] = self.model_id
        if not self.llamacpp_extensions:
            body.pop("id_slot", None)
        return body

    async def post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        """POST a non-streaming request; engine errors map onto the exception tree."""
        if not self.alive():
            raise EngineUnreachable(f"engine at {self.api_base} is restarting; retry shortly")
        client = self._client()
        r = await self._send(client, client.build_request("POST", self.api_base + path, json=self._prepare(body)))
        try:
            await r.aread()
        except httpx.TransportError as e:
            raise EngineUnavailable(f"engine at {self.api_base} failed mid-answer ({type(e).__name__})") from None
        finally:
            await r.aclose()
        if r.status_code >= 400:
            raise _engine_error(r.status_code, r.text, self.api_base)
        out: dict[str, Any] = r.json()
        return out

    async def stream(self, path: str, body: dict[str, Any],
                     headers: dict[str, str] | None = None) -> AsyncGenerator[dict[str, Any], None]:
        """POST a streaming request and yield each SSE chunk as a dict; a broken stream raises."""
        if not self.alive():
            raise EngineUnreachable(f"engine at {self.api_base} is restarting; retry shortly")
        client = self._client()
        request = client.build_request("POST", self.api_base + path, json=self._prepare(body) | {"stream": True},
                                       headers=headers)
        r = await self._send(client, request)
        try:
            if r.status_code >= 400:
                raise _engine_error(r.status_code, (await r.aread()).decode(errors="replace"), self.api_base)
            done = False
            async for line in r.aiter_lines():
                if not line.startswith("data:"):
                    continue
                data = line[5:].strip()
                if data == "[DONE]":
                    done = True
                    break
                chunk = json.loads(data)
                if "error" in chunk:
                    raise _engine_error(500, data, self.api_base)
                yield chunk
            if not done:
                raise EngineUnavailable(f"engine at {self.api_base} ended the stream without [DONE]")
        except httpx.TransportError as e:
            raise EngineUnavailable(
                f"engine at {self.api_base} broke the stream ({type(e).__name__}); retry the request"
            ) from None
        finally:
            await r.aclose()

    async def _send(self, client: httpx.AsyncClient, request: httpx.Request) -> httpx.Response:
        """Send, retrying once when the socket closed before any answer (a stale keep-alive connection)."""
        for attempt in range(2):
            try:
                return await client.send(request, stream=True)
            except (httpx.RemoteProtocolError, httpx.ConnectError) as e:
                if attempt == 1 or not self.alive():
                    # A refused connection never reached the engine; a closed one may have (it is not rerouted).
                    kind = EngineUnreachable if isinstance(e, httpx.ConnectError) else EngineUnavailable
                    raise kind(f"engine at {self.api_base} is unreachable ({type(e).__name__}); retry") from None
            except httpx.TransportError as e:
                kind = EngineUnreachable if isinstance(e, httpx.ConnectTimeout) else EngineUnavailable
                raise kind(f"engine at {self.api_base} is unreachable ({type(e).__name__}); retry") from None
        raise AssertionError("unreachable")

    def describe(self) -> dict[str, Any]:
        """What an operator sees about this engine (not served to unauthenticated clients)."""
        return {"kind": self.kind, "url": self.api_base, "alive": self.alive(),
                "adapter": self.adapter.version if self.adapter else None}

    def kill(self) -> None:
        """Stop a hung engine at once so the restart path takes over (an upstream is not ours to kill)."""


class LlamaCppEngine(Engine):
    """The embedded engine: llama.cpp's own server in a child process (see worker.py)."""

    kind = "llamacpp"
    llamacpp_extensions = True

    def __init__(self, model_path: Path, *, slots: int, ctx: int, threads: int,
                 prefill_chunk: int = PREFILL_CHUNK_DEFAULT, adapter: AdapterVersion | None = None,
                 cores: tuple[int, ...] = (),
                 start_timeout_s: float = 60.0, timeout_s: float = 600.0) -> None:
        super().__init__("http://unstarted/v1", adapter=adapter, timeout_s=timeout_s)
        validate_gguf(model_path)
        if adapter is not None and adapter.gguf_path is None:
            raise ConfigError(f"adapter {adapter.version!r} has no gguf_path; the llama.cpp engine needs a GGUF LoRA")
        if adapter is not None and adapter.gguf_path is not None:
            validate_gguf(Path(adapter.gguf_path))
        self.spec: dict[str, Any] = {
            "model_path": str(model_path), "slots": slots, "ctx": ctx, "threads": threads,
            "prefill_chunk": prefill_chunk,
            "lora_path": str(adapter.gguf_path) if adapter and adapter.gguf_path else None,
            "lora_scale": adapter.scale if adapter else 1.0, "cores": list(cores),
        }
        self.start_timeout_s = start_timeout_s
        self.proc: subprocess.Popen[str] | None = None
        self.restarts = 0
        self._lock = threading.Lock()
        self._stopping: set[asyncio.Task[None]] = set()

    def start(self) -> None:
        """Spawn the worker and block until the model is loaded and /health answers."""
        with self._lock:
            self._spawn()

    def _spawn(self) -> None:
        # The engine listens on loopback and refuses requests without this key: only the gateway reaches it.
        # Handed over in the environment, not argv (other local users can read argv).
        self.api_key = secrets.token_urlsafe(32)
        proc = subprocess.Popen(
            [sys.executable, "-m", "blacksoil.serving.worker", json.dumps(self.spec)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
            env=os.environ | {"PYTHONUNBUFFERED": "1", "BLACKSOIL_ENGINE_API_KEY": self.api_key},
        )
        assert proc.stdout is not None
        line = _readline_with_timeout(proc, self.start_timeout_s)
        if not line.startswith("READY "):
            proc.kill()
            raise InternalError(
                f"engine worker for {self.spec['model_path']!r} did not start within {self.start_timeout_s:.0f} s "
                f"(exit code {proc.poll()}); check the model file and free memory"
            )
        self.api_base = line.split(" ", 1)[1].strip() + "/v1"
        self.proc = proc

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    # -- requests: always streamed, so abandoned work can be stopped --
    # This llama.cpp neither cancels a non-streamed request whose client hung up nor notices a closed stream
    # before its socket buffer fills (measured: the slot stayed busy to max_tokens). A stream tagged with an
    # X-Conversation-Id is stopped at once by DELETE /v1/stream?conv_id=..., so every engine call is such a
    # stream, and one that ends early (client gone, request cancelled) is stopped explicitly.
    async def stream(self, path: str, body: dict[str, Any],
                     headers: dict[str, str] | None = None) -> AsyncGenerator[dict[str, Any], None]:
        conv = "bs-" + uuid.uuid4().hex
        chunks = super().stream(path, body, (headers or {}) | {"X-Conversation-Id": conv})
        finished = False
        try:
            async for chunk in chunks:
                yield chunk
            finished = True
        finally:
            if not finished:
                self._stop_session(conv)
            await chunks.aclose()

    async def post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        """A non-streamed answer assembled from the engine's stream (see stream for why)."""
        chat = path.endswith("/chat/completions")
        text: list[str] = []
        logprobs: list[dict[str, Any]] = []
        finish: str | None = None
        usage: dict[str, Any] = {}
        timings: dict[str, Any] = {}
        last: dict[str, Any] = {}
        async for chunk in self.stream(path, body | {"stream_options": {"include_usage": True}}):
            last = chunk
            usage = chunk.get("usage") or usage
            timings = chunk.get("timings") or timings
            for c in chunk.get("choices") or []:
                piece = (c.get("delta") or {}).get("content") if chat else c.get("text")
                text.append(piece or "")
                logprobs += (c.get("logprobs") or {}).get("content") or []
                finish = c.get("finish_reason") or finish
        choice: dict[str, Any] = {"index": 0, "finish_reason": finish}
        if chat:
            choice["message"] = {"role": "assistant", "content": "".join(text)}
        else:
            choice["text"] = "".join(text)
        if logprobs:
            choice["logprobs"] = {"content": logprobs}
        return {"id": last.get("id"), "object": "chat.completion" if chat else "text_completion",
                "created": last.get("created", int(time.time())), "model": last.get("model"), "choices": [choice],
                "usage": usage, "timings": timings}

    def _stop_session(self, conv: str) -> None:
        """Tell the engine to stop the stream `conv`, without holding up the caller's cleanup."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        task = loop.create_task(self._delete_session(conv))
        self._stopping.add(task)
        task.add_done_callback(self._stopping.discard)

    async def _delete_session(self, conv: str) -> None:
        with contextlib.suppress(httpx.HTTPError):  # a dead engine stopped anyway; the restart path follows
            await self._client().delete(self.root_url + "/v1/stream", params={"conv_id": conv}, timeout=5.0)

    def kill(self) -> None:
        proc = self.proc
        if proc is not None:
            proc.kill()

    def stop(self) -> None:
        """Close the worker's stdin (it exits), then make sure it is gone."""
        super().stop()
        with self._lock:
            self._terminate()

    def _terminate(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None:
            return
        try:
            if proc.stdin:
                proc.stdin.close()
            proc.wait(timeout=5)
        except (subprocess.TimeoutExpired, OSError):
            proc.kill()
            proc.wait(timeout=5)

    def restart(self) -> None:
        """Replace a dead (or hung) worker with a fresh one."""
        with self._lock:
            self._terminate()
            self._clients.clear()
            self._spawn()
            self.restarts += 1

    @property
    def pid(self) -> int | None:
        """Process id of the worker (tests kill it to check recovery)."""
        return self.proc.pid if self.proc else None


def _readline_with_timeout(proc: subprocess.Popen[str], timeout_s: float) -> str:
    """First stdout line of the worker, or '' when it died or timed out."""
    out: list[str] = []

    def read() -> None:
        assert proc.stdout is not None
        out.append(proc.stdout.readline())

    t = threading.Thread(target=read, daemon=True)
    t.start()
    deadline = time.monotonic() + timeout_s
    while t.is_alive() and time.monotonic() < deadline:
        t.join(0.05)
    return out[0] if out else ""
