"""Executes one API request: admission, the engine call (streamed or not), tool parsing, metrics, experience.

The route handlers in app.py stay thin; everything a request goes through is readable top to bottom here.
"""

from __future__ import annotations

import asyncio
import hashlib
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
from blacksoil.serving.engine import EngineUnavailable, EngineUnreachable
from blacksoil.serving.metrics import GatewayMetrics
from blacksoil.serving.pool import Replica, ReplicaPool
from blacksoil.serving.protocol import DROPPED
from blacksoil.serving.tenancy import TenantGate
from blacksoil.serving.tools import PROMPT_FIELDS, ToolPlan, answer_body, parse, parse_output, plan_request
from blacksoil.serving.toolstream import ToolStreamer
from blacksoil.serving.tracing import GatewayTracing, ModelCallTrace

log = logging.getLogger(__name__)
_REROUTES = 2
"""Times a request that could not reach its replica's engine is placed again elsewhere (nothing ran yet)."""
_OURS = ("user", "priority", "stream_options", "max_completion_tokens", "stream", *DROPPED)
SESSION_ID_MAX = 256
"""Longest session id (X-Session-Id or `user`) accepted (characters)."""
PRIORITY_MAX = 1000
"""Largest |priority| (X-Priority or `priority`) accepted, as in the request model."""
PREFIX_MIN_CHARS = 256
"""Shortest shared prompt prefix (system messages + tools, characters, about 64 tokens) that new sessions are
routed on: below it the cache gain is a few tokens, and concentrating every session on one replica is not worth it."""


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
    held: bool = False
    """It holds its place (ticket) on a replica: released exactly once."""
    trace: ModelCallTrace | None = None
    """Its OpenTelemetry spans (serving/tracing.py), started by the route."""

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
        self.tenants = TenantGate(cfg.tenancy, metrics, line_timeout_s=cfg.queue_timeout_s)
        self.tracing = GatewayTracing(cfg.tracing)

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
        try:
            for attempt in range(_REROUTES + 1):
                t0 = time.perf_counter()
                try:
                    out = await self._post(call, plan, body, replica)
                    break
                except EngineUnreachable:
                    if attempt == _REROUTES:
                        raise
                    replica = await self._reroute(call, body)
        except BlacksoilError as e:
            await self._failed(call, e)
            raise
        finally:
            self._release(call)
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

    async def _post(self, call: Call, plan: ToolPlan, body: dict[str, Any], replica: Replica) -> dict[str, Any]:
        out = await replica.engine.post(call.path, body)
        if call.kind == "chat" and plan.drops_repeats:
            first = out["choices"][0]
            if parse(plan, first["message"].get("content") or "", first.get("finish_reason")).repeats_only:
                # Only calls already answered: ask for the answer in the same slot (its prompt is cached).
                spent = out.get("usage") or {}
                out = await replica.engine.post(call.path, answer_body(body))
                out["usage"] = _add_usage(spent, out.get("usage") or {})
        return out

    async def stream(self, call: Call) -> AsyncIterator[str]:
        """Admit first (so a full queue is an HTTP 429), then return the SSE generator."""
        plan, body = self._engine_body(call)
        body["stream_options"] = {"include_usage": True}
        replica = await self._admit(call, body)
        return self._sse(call, plan, body, replica)

    async def _sse(self, call: Call, plan: ToolPlan, body: dict[str, Any], replica: Replica) -> AsyncIterator[str]:
        last: float | None = None
        text: list[str] = []
        usage: dict[str, Any] = {}
        timings: dict[str, Any] = {}
        finish: str | None = None
        tokens: list[int] = []
        logprobs: list[float] = []
        want_usage = bool((call.request.get("stream_options") or {}).get("include_usage"))
        # Tools: the constrained JSON is turned into tool_calls / content deltas as it grows (toolstream.py).
        streamer = ToolStreamer(plan) if plan.mode == "tools" and call.kind == "chat" else None
        served = self.pool.served_name
        bodies: list[dict[str, Any]] = [body]
        spent: dict[str, Any] = {}
        retried = False
        reroutes = 0
        try:
            while bodies:
                stream = replica.engine.stream(call.path, bodies[-1])
                try:
                    first = await anext(stream)
                except StopAsyncIteration:
                    first = None
                except EngineUnreachable:  # nothing reached the engine and nothing was sent: place it again
                    if reroutes == _REROUTES or call.ttft_s is not None or retried:
                        raise
                    reroutes += 1
                    replica = await self._reroute(call, bodies[-1])
                    continue
                bodies.pop()
                async for chunk in _chained(first, stream):
                    chunk.update(id=call.id, model=self.pool.served_name)
                    usage = _add_usage(spent, chunk["usage"]) if chunk.get("usage") else usage
                    timings = chunk.get("timings") or timings
                    if not chunk.get("choices"):
                        continue
                    choice = chunk["choices"][0]
                    finish = choice.get("finish_reason") or finish
                    delta_in = choice.get("delta") or {}
                    piece = delta_in.get("content") if call.kind == "chat" else choice.get("text")
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
                    if streamer is not None:
                        for delta in streamer.feed(piece) if piece else []:
                            yield _sse(_chunk(call, served, delta, None))
                        continue
                    yield _sse(chunk)
                if streamer is not None and streamer.repeats_only and not retried:
                    # Only calls already answered: ask for the answer in the same slot; its tokens replace these.
                    spent, streamer, text, tokens, logprobs, retried = usage, ToolStreamer(plan), [], [], [], True
                    bodies.append(answer_body(body))
            if streamer is not None:
                for delta in streamer.leftover():
                    yield _sse(_chunk(call, served, delta, None))
                message, finish = streamer.message(finish)
                yield _sse(_chunk(call, served, {}, finish))
            if want_usage:
                yield _sse({"id": call.id, "object": "chat.completion.chunk", "created": int(time.time()),
                            "model": self.pool.served_name, "choices": [], "usage": usage})
        except BlacksoilError as e:
            self._release(call)
            await self._failed(call, e)
            yield _sse(http_error_body(e, self.home))
            yield "data: [DONE]\n\n"
            return
        except Exception as e:  # a bug: the stream still ends in the one error shape and [DONE], never cut
            self._release(call)
            log.exception("stream %s failed", call.id)
            yield _sse(error_body(f"internal error ({type(e).__name__}); see the gateway log", "internal_error",
                                  "500", None))
            yield "data: [DONE]\n\n"
            return
        except BaseException:  # the client hung up (generator closed) or the task was cancelled
            self._release(call)
            raise
        self._release(call)
        # The event is stored before the last byte: a client that saw [DONE] can rely on it (a crash right
        # after [DONE] used to lose the event).
        if streamer is not None:
            message = streamer.message(finish)[0]
        else:
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
        await self.tenants.enter(call.tenant)  # before the shared queue: a flooding tenant waits in its own line
        self.metrics.waiting.inc()
        key = prefix_key(call.request) if call.kind == "chat" else None
        try:
            for attempt in range(3):
                ticket = Ticket(call.id, call.session_id, call.priority, prefix_key=key)
                replica = await self.pool.acquire(ticket)
                if replica.engine.alive() or attempt == 2:
                    break
                # Its engine died after the last request: requeue; the restart puts the replica back.
                self.pool.release(ticket)
                self.pool.report_failure(replica.name)
                await asyncio.sleep(0.1)
        except BaseException:
            self.tenants.leave(call.tenant)
            raise
        finally:
            self.metrics.waiting.dec()
        call.ticket, call.replica, call.held = ticket, replica, True
        call.queue_s = time.perf_counter() - call.arrived
        if call.trace is not None:
            call.trace.admitted(call.queue_s, replica.name, ticket.slot)
        self.metrics.running.inc()
        if ticket.slot is not None and replica.engine.llamacpp_extensions:
            body["id_slot"] = ticket.slot
        return replica

    async def _reroute(self, call: Call, body: dict[str, Any]) -> Replica:
        """`call` could not reach its replica's engine: take that replica out of rotation, give the place back and
        admit the call again (to another replica)."""
        assert call.replica is not None
        log.warning("request %s could not reach replica %s; placing it again", call.id, call.replica.name)
        self.pool.report_unreachable(call.replica.name)
        self._release(call)
        body.pop("id_slot", None)
        return await self._admit(call, body)

    def _release(self, call: Call) -> None:
        if not call.held:  # released already (a rerouted call whose new admission failed)
            return
        call.held = False
        assert call.ticket is not None
        self.metrics.running.dec()
        self.pool.release(call.ticket)
        self.tenants.leave(call.tenant)
        if call.trace is not None:
            call.trace.engine_done()

    async def _failed(self, call: Call, e: BlacksoilError) -> None:
        self.metrics.errors.labels(str(e.status_code)).inc()
        if call.trace is not None:
            call.trace.failed(type(e).__name__, e.message)
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
            self.tenants.observe_ttft(call.tenant, call.ttft_s)
        self.tenants.charge(call.tenant, int(usage.get("prompt_tokens", 0)) + int(usage.get("completion_tokens", 0)))
        m.prompt_tokens.labels(*labels).inc(usage.get("prompt_tokens", 0))
        m.generation_tokens.labels(*labels).inc(usage.get("completion_tokens", 0))
        m.prefix_hits.labels(*labels).inc(timings.get("cache_n", 0))
        m.requests.labels(*labels, finish or "unknown").inc()
        if call.trace is not None:
            call.trace.finished(call.id, self.pool.served_name, usage, finish, call.ttft_s, message)
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
                      else None, "cached_tokens": timings.get("cache_n", 0), "priority": call.priority,
                      # What shaped the prompt besides messages and tools: the learner renders it again from these.
                      **{k: call.request[k] for k in PROMPT_FIELDS if k in call.request}}))

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


def prefix_key(request: dict[str, Any]) -> str | None:
    """Hash of the prompt prefix an agent's sessions share: its leading system/developer messages and its tools.

    Agent frameworks send the same instructions and tool schemas at the start of every session and put the task and
    the tool results after them; chat templates render the system block (with the tool descriptions) first, so this
    is the leading run of prompt tokens a replica's KV cache can share between sessions. A fixed first N characters
    of the rendered prompt would either stop inside a long system prompt or run into the first user message and give
    every session of one agent its own key. None when that prefix is shorter than PREFIX_MIN_CHARS. Chat requests
    only: a raw completions prompt marks no boundary between shared and per-session text.
    """
    parts: list[str] = []
    for m in request.get("messages") or []:
        if not isinstance(m, dict) or m.get("role") not in ("system", "developer"):
            break
        content = m.get("content")
        parts.append(content if isinstance(content, str) else json.dumps(content, sort_keys=True))
    if request.get("tools"):
        parts.append(json.dumps(request["tools"], sort_keys=True))
    text = "\x00".join(parts)
    if len(text) < PREFIX_MIN_CHARS:
        return None
    return hashlib.blake2b(text.encode(), digest_size=12).hexdigest()


def _token_info(choice: dict[str, Any]) -> tuple[list[int], list[float]]:
    content = (choice.get("logprobs") or {}).get("content") or []
    return ([int(c["id"]) for c in content if "id" in c],
            [float(c["logprob"]) for c in content if "logprob" in c])


def _add_usage(spent: dict[str, Any], usage: dict[str, Any]) -> dict[str, Any]:
    """Token usage of an answer asked for after repeated calls: both engine calls count."""
    keys = ("prompt_tokens", "completion_tokens", "total_tokens")
    return usage | {k: int(usage.get(k, 0)) + int(spent.get(k, 0)) for k in keys if k in usage or k in spent}


def _chunk(call: Call, model: str, delta: dict[str, Any], finish: str | None) -> dict[str, Any]:
    return {"id": call.id, "object": "chat.completion.chunk", "created": int(time.time()),
            "model": model, "choices": [{"index": 0, "delta": delta,
                                                                   "finish_reason": finish}]}


def _sse(obj: dict[str, Any]) -> str:
    return "data: " + json.dumps(obj, ensure_ascii=False) + "\n\n"


async def _chained(first: dict[str, Any] | None, rest: AsyncIterator[dict[str, Any]]) -> AsyncIterator[dict[str, Any]]:
    """`first` (already taken from the engine's stream to see that it started), then the rest of it."""
    if first is None:
        return
    yield first
    async for chunk in rest:
        yield chunk
