"""Executes one API request: admission, the engine call (streamed or not), tool parsing, metrics, experience.

The route handlers in app.py stay thin; everything a request goes through is readable top to bottom here.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from blacksoil.contracts import ExperienceEvent, ExperienceSink
from blacksoil.errors import BlacksoilError, NotFoundError, UserError, error_body, http_error_body
from blacksoil.serving.admission import Ticket
from blacksoil.serving.engine import EngineUnavailable
from blacksoil.serving.metrics import GatewayMetrics
from blacksoil.serving.pool import Replica, ReplicaPool
from blacksoil.serving.protocol import DROPPED
from blacksoil.serving.tools import ToolPlan, parse_output, plan_request

log = logging.getLogger(__name__)
_OURS = ("user", "priority", "stream_options", "max_completion_tokens", "stream", *DROPPED)
SESSION_ID_MAX = 256
"""Longest session id (X-Session-Id or `user`) accepted (characters)."""
PRIORITY_MAX = 1000
"""Largest |priority| (X-Priority or `priority`) accepted, as in the request model."""


@dataclass
class Call:
    """One request in flight: what it asked, where it runs, what it cost."""

    kind: str
    """'chat' or 'completions'."""
    request: dict[str, Any]
    session_id: str | None
    priority: int
    tenant: str
    id: str = field(default_factory=lambda: "chatcmpl-" + uuid.uuid4().hex)
    arrived: float = field(default_factory=time.perf_counter)
    queue_s: float = 0.0
    ttft_s: float | None = None
    replica: Replica | None = None
    ticket: Ticket | None = None

    @property
    def path(self) -> str:
        return "/chat/completions" if self.kind == "chat" else "/completions"


class Gateway:
    """The request path shared by every route."""

    def __init__(self, pool: ReplicaPool, sink: ExperienceSink | None, metrics: GatewayMetrics,
                 default_max_tokens: int, capture_tokens: bool = True, home: str = "") -> None:
        self.pool = pool
        self.home = home
        """The data directory, kept out of every error message a client reads."""
        self.sink = sink
        self.metrics = metrics
        self.default_max_tokens = default_max_tokens
        self.capture_tokens = capture_tokens
        cfg = pool.config
        # An embedded engine cannot generate more than one slot's share of the context anyway.
        self.max_tokens_limit = min(cfg.max_tokens_cap, cfg.ctx // cfg.slots) if pool.model else cfg.max_tokens_cap

    def check_model(self, name: str | None) -> None:
        if name not in (None, "", self.pool.served_name):
            raise NotFoundError(f"model {name!r} is not served here (serving {self.pool.served_name!r}); "
                                "set `model` to it or start the gateway with --model", param="model",
                                code="model_not_found")

    # -- the two shapes of a call --
    async def complete(self, call: Call) -> dict[str, Any]:
        """Non-streaming: admit, run, parse, record."""
        plan, body = self._engine_body(call)
        replica = await self._admit(call, body)
        t0 = time.perf_counter()
        try:
            out = await replica.engine.post(call.path, body)
        except BlacksoilError as e:
            await self._failed(call, e)
            raise
        finally:
            self._release(call, time.perf_counter() - t0)
        timings = out.get("timings") or {}
        call.ttft_s = (t0 - call.arrived) + timings.get("prompt_ms", 0.0) / 1000  # engine-reported prefill
        choice = out["choices"][0]
        if call.kind == "chat":
            message, finish = parse_output(plan, choice["message"].get("content") or "", choice.get("finish_reason"))
            choice.update(message=message, finish_reason=finish)
        tokens, logprobs = _token_info(choice)
        if not call.request.get("logprobs"):
            choice.pop("logprobs", None)
        out.update(id=call.id, model=self.pool.served_name)
        await self._finished(call, replica, out.get("usage") or {}, timings, choice.get("message") or
                       {"text": choice.get("text")}, choice.get("finish_reason"), tokens, logprobs)
        return out

    async def stream(self, call: Call) -> AsyncIterator[str]:
        """Admit first (so a full queue is an HTTP 429), then return the SSE generator."""
        plan, body = self._engine_body(call)
        body["stream_options"] = {"include_usage": True}
        replica = await self._admit(call, body)
        return self._sse(call, plan, body, replica)

    async def _sse(self, call: Call, plan: ToolPlan, body: dict[str, Any], replica: Replica) -> AsyncIterator[str]:
        t0 = time.perf_counter()
        last: float | None = None
        text: list[str] = []
        usage: dict[str, Any] = {}
        timings: dict[str, Any] = {}
        finish: str | None = None
        tokens: list[int] = []
        logprobs: list[float] = []
        want_usage = bool((call.request.get("stream_options") or {}).get("include_usage"))
        buffered = plan.mode == "tools"  # the tool call is known only once the JSON is complete
        try:
            async for chunk in replica.engine.stream(call.path, body):
                chunk.update(id=call.id, model=self.pool.served_name)
                usage = chunk.get("usage") or usage
                timings = chunk.get("timings") or timings
                if not chunk.get("choices"):
                    continue
                choice = chunk["choices"][0]
                finish = choice.get("finish_reason") or finish
                piece = (choice.get("delta") or {}).get("content") if call.kind == "chat" else choice.get("text")
                t, lp = _token_info(choice)
                tokens += t
                logprobs += lp
                if not call.request.get("logprobs"):
                    choice.pop("logprobs", None)
                if piece:
                    now = time.perf_counter()
                    if call.ttft_s is None:
                        call.ttft_s = now - call.arrived
                    elif last is not None:
                        self.metrics.itl.labels(*self._labels(replica)).observe(now - last)
                    last = now
                    text.append(piece)
                if buffered and choice.get("finish_reason") is None:
                    continue
                if buffered:
                    message, finish = parse_output(plan, "".join(text), finish)
                    served = self.pool.served_name
                    yield _sse(_chunk(call, served, {"role": "assistant", **_delta(message)}, None))
                    yield _sse(_chunk(call, served, {}, finish))
                    continue
                yield _sse(chunk)
            if want_usage:
                yield _sse({"id": call.id, "object": "chat.completion.chunk", "created": int(time.time()),
                            "model": self.pool.served_name, "choices": [], "usage": usage})
        except BlacksoilError as e:
            self._release(call, time.perf_counter() - t0)
            await self._failed(call, e)
            yield _sse(http_error_body(e, self.home))
            yield "data: [DONE]\n\n"
            return
        except Exception as e:  # a bug: the stream still ends in the one error shape and [DONE], never cut
            self._release(call, time.perf_counter() - t0)
            log.exception("stream %s failed", call.id)
            yield _sse(error_body(f"internal error ({type(e).__name__}); see the gateway log", "internal_error",
                                  "500", None))
            yield "data: [DONE]\n\n"
            return
        except BaseException:  # the client hung up (generator closed) or the task was cancelled
            self._release(call, time.perf_counter() - t0)
            raise
        self._release(call, time.perf_counter() - t0)
        # The event is stored before the last byte: a client that saw [DONE] can rely on it (a crash right
        # after [DONE] used to lose the event).
        message = parse_output(plan, "".join(text), finish)[0] if call.kind == "chat" else {"text": "".join(text)}
        await self._finished(call, replica, usage, timings, message, finish, tokens, logprobs)
        yield "data: [DONE]\n\n"

    # -- steps --
    def _engine_body(self, call: Call) -> tuple[ToolPlan, dict[str, Any]]:
        req = call.request
        self.check_model(req.get("model"))
        if call.kind == "chat":
            plan, body = plan_request(req)
        else:
            plan, body = ToolPlan("plain"), dict(req)
        asked = req.get("max_completion_tokens") or req.get("max_tokens")
        if asked is not None and asked > self.max_tokens_limit:
            param = "max_completion_tokens" if req.get("max_completion_tokens") else "max_tokens"
            raise UserError(f"{param} {asked} exceeds this gateway's limit of {self.max_tokens_limit} tokens "
                            "(serving.max_tokens_cap, and the context per engine slot); ask for fewer",
                            param=param, code="max_tokens_too_large")
        body["max_tokens"] = min(asked or self.default_max_tokens, self.max_tokens_limit)
        for k in _OURS:
            body.pop(k, None)
        if call.kind == "chat" and self.capture_tokens and not body.get("logprobs"):
            # token ids + logprobs for the experience event (llama.cpp sends none with top_logprobs=0)
            body.update(logprobs=True, top_logprobs=1)
        return plan, body

    async def _admit(self, call: Call, body: dict[str, Any]) -> Replica:
        self.metrics.waiting.inc()
        try:
            for attempt in range(3):
                ticket = Ticket(call.id, call.session_id, call.priority)
                replica = await self.pool.acquire(ticket)
                if replica.engine.alive() or attempt == 2:
                    break
                # Its engine died after the last request: requeue; the restart puts the replica back.
                self.pool.release(ticket, 0.0)
                self.pool.report_failure(replica.name)
                await asyncio.sleep(0.1)
        finally:
            self.metrics.waiting.dec()
        call.ticket, call.replica = ticket, replica
        call.queue_s = time.perf_counter() - call.arrived
        self.metrics.running.inc()
        if ticket.slot is not None and replica.engine.llamacpp_extensions:
            body["id_slot"] = ticket.slot
        return replica

    def _release(self, call: Call, engine_s: float) -> None:
        assert call.ticket is not None
        self.metrics.running.dec()
        self.pool.release(call.ticket, engine_s)

    async def _failed(self, call: Call, e: BlacksoilError) -> None:
        self.metrics.errors.labels(str(e.status_code)).inc()
        if isinstance(e, EngineUnavailable) and call.replica is not None:
            self.pool.report_failure(call.replica.name)
        await self._emit(ExperienceEvent(kind="model_call", tenant=call.tenant, session_id=call.session_id,
                                   request_id=call.id, model=self.pool.served_name,
                                   adapter_version=call.replica.adapter_version if call.replica else None,
                                   messages=call.request.get("messages") or [], tools=call.request.get("tools"),
                                   error=e.message))

    def _labels(self, replica: Replica) -> tuple[str, str]:
        return self.pool.served_name, replica.adapter_version

    async def _finished(self, call: Call, replica: Replica, usage: dict[str, Any], timings: dict[str, Any],
                  message: dict[str, Any], finish: str | None, tokens: list[int], logprobs: list[float]) -> None:
        e2e = time.perf_counter() - call.arrived
        labels = self._labels(replica)
        m = self.metrics
        m.e2e.labels(*labels).observe(e2e)
        m.queue.labels(*labels).observe(call.queue_s)
        if call.ttft_s is not None:
            m.ttft.labels(*labels).observe(call.ttft_s)
        m.prompt_tokens.labels(*labels).inc(usage.get("prompt_tokens", 0))
        m.generation_tokens.labels(*labels).inc(usage.get("completion_tokens", 0))
        m.prefix_hits.labels(*labels).inc(timings.get("cache_n", 0))
        m.requests.labels(*labels, finish or "unknown").inc()
        await self._emit(ExperienceEvent(
            kind="model_call", tenant=call.tenant, session_id=call.session_id, request_id=call.id,
            model=self.pool.served_name, adapter_version=None if replica.adapter_version == "base"
            else replica.adapter_version,
            messages=call.request.get("messages") or [{"role": "user", "content": call.request.get("prompt")}],
            tools=call.request.get("tools"), response=message, completion_token_ids=tokens or None,
            completion_logprobs=logprobs or None,
            timings={"queue_s": call.queue_s, "ttft_s": call.ttft_s or 0.0, "e2e_s": e2e},
            usage={k: int(usage.get(k, 0)) for k in ("prompt_tokens", "completion_tokens")},
            metadata={"finish_reason": finish, "replica": replica.name, "slot": call.ticket.slot if call.ticket
                      else None, "cached_tokens": timings.get("cache_n", 0), "priority": call.priority}))

    async def _emit(self, event: ExperienceEvent) -> None:
        """Hand the event to the sink off the event loop (its fsync must not stall other streams)."""
        if self.sink is None:
            return
        try:
            await asyncio.to_thread(self.sink.emit, event)
        except Exception:  # a broken sink must not fail the user's request; it is logged loudly
            log.exception("experience sink %r failed to take event %s", self.sink, event.event_id)


def session_and_priority(headers: dict[str, str], body: dict[str, Any]) -> tuple[str | None, int]:
    """Session id from X-Session-Id or `user`; priority from X-Priority or `priority`."""
    session = headers.get("x-session-id") or body.get("user") or None
    if session is not None and len(session) > SESSION_ID_MAX:
        raise UserError(f"session id (X-Session-Id or user) is {len(session)} characters; use at most "
                        f"{SESSION_ID_MAX}", param="user", code="invalid_value")
    raw = headers.get("x-priority", body.get("priority"))
    try:
        priority = int(raw) if raw is not None else 0
    except (TypeError, ValueError):
        raise UserError(f"priority {raw!r} is not an integer; send X-Priority: <int>", param="priority") from None
    if not -PRIORITY_MAX <= priority <= PRIORITY_MAX:
        raise UserError(f"priority {priority} is outside [-{PRIORITY_MAX}, {PRIORITY_MAX}]; send a smaller one",
                        param="priority", code="invalid_value")
    return session, priority


def _token_info(choice: dict[str, Any]) -> tuple[list[int], list[float]]:
    content = (choice.get("logprobs") or {}).get("content") or []
    return ([int(c["id"]) for c in content if "id" in c],
            [float(c["logprob"]) for c in content if "logprob" in c])


def _delta(message: dict[str, Any]) -> dict[str, Any]:
    if message.get("tool_calls"):
        return {"content": None, "tool_calls": [{"index": i, **c} for i, c in enumerate(message["tool_calls"])]}
    return {"content": message.get("content")}


def _chunk(call: Call, model: str, delta: dict[str, Any], finish: str | None) -> dict[str, Any]:
    return {"id": call.id, "object": "chat.completion.chunk", "created": int(time.time()),
            "model": model, "choices": [{"index": 0, "delta": delta,
                                                                   "finish_reason": finish}]}


def _sse(obj: dict[str, Any]) -> str:
    return "data: " + json.dumps(obj, ensure_ascii=False) + "\n\n"

