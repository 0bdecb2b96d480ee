"""The FastAPI app of the gateway: OpenAI routes, /health, /metrics, and the one JSON error shape.

Every 4xx/5xx, FastAPI's own validation errors, 404s and errors inside a stream included, answers the shape
`blacksoil.errors.error_body` builds (message, type, code, param), and no message shows the data directory.

Protected (each with a test in tests/serving): malformed, mistyped, non-JSON, too deep or non-finite bodies and
unknown (engine-specific) fields never reach the engine and never give a 500 (test_errors.py, test_hardening.py,
test_fuzz.py); max_tokens is capped (serving.max_tokens_cap and the context per slot); a flood of requests meets
a bounded queue and a 429 (test_gateway.py::test_full_queue_answers_429_with_retry_after); a crashing or hung
engine cannot take the gateway down (test_recovery.py); a client that hangs up, streaming or not, gives its
slot back and the engine stops generating (test_hardening.py); /health shows no engine address; per-tenant
requests and tokens per minute, requests in flight and a bounded own line per tenant (`[serving.tenancy]`,
serving/tenancy.py): over a limit a 429 with Retry-After names it, and a tenant flooding past its
max_concurrent cannot raise another's TTFT p99 by more than 20 % (test_tenancy.py, test_tenancy_isolation.py).
Not protected: there is no TLS and, without the platform's API keys, no authentication (the gateway binds
127.0.0.1 unless told otherwise); the X-Priority header is trusted as sent, and so is X-Tenant without API keys
(a client can spread its load over made-up tenants); no tenant limits apply unless configured, and they hold per
gateway process.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Receive, Scope, Send

from blacksoil.contracts import TENANT_ID_MAX, ExperienceSink
from blacksoil.errors import BlacksoilError, RetryableError, UserError, error_body, http_error_body
from blacksoil.serving.gateway import Call, Gateway, session_and_priority
from blacksoil.serving.metrics import GatewayMetrics
from blacksoil.serving.pool import ReplicaPool
from blacksoil.serving.protocol import ChatRequest, CompletionRequest
from blacksoil.serving.replica_api import replica_router

log = logging.getLogger(__name__)
_HTTP_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
               404: "not_found_error", 405: "invalid_request_error", 413: "invalid_request_error",
               415: "invalid_request_error", 422: "invalid_request_error", 429: "rate_limit_error"}
DISCONNECT_POLL_S = 0.25
"""How often a non-streaming request checks that its client is still there (s)."""


def error_response(status: int, message: str, etype: str, code: str | None = None, param: str | None = None,
                   headers: dict[str, str] | None = None) -> JSONResponse:
    """The one error shape, as a response."""
    return JSONResponse(error_body(message, etype, code or str(status), param), status_code=status,
                        headers=headers)


_YAML_TYPES = ("application/yaml", "application/x-yaml", "text/yaml")


class JsonBodiesOnly:
    """ASGI middleware: a POST/PUT/PATCH whose Content-Type is not JSON is a 415 in the one error shape.

    Without it FastAPI handed the raw bytes to the body model, and the error handler failed on them (a 500).
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] in ("POST", "PUT", "PATCH"):
            ctype = dict(scope["headers"]).get(b"content-type", b"").decode("latin-1").split(";")[0].strip().lower()
            yaml_ok = scope["path"] == "/v1/agents" and ctype in _YAML_TYPES  # agent specs come as YAML too
            if ctype and ctype != "application/json" and not ctype.endswith("+json") and not yaml_ok:
                response = error_response(415, f"Content-Type {ctype!r} is not supported; send the body as JSON "
                                          "with `Content-Type: application/json`", "invalid_request_error",
                                          "unsupported_media_type")
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


async def until_disconnect(request: Request, work: Awaitable[Any]) -> Any:
    """Run `work`; cancel it when the client hangs up, so the engine call is aborted and its slot freed.

    Uvicorn does not cancel a non-streaming handler whose client went away: the engine kept generating for
    nobody and held the slot until max_tokens (measured: ~90 s).
    """
    task = asyncio.ensure_future(work)
    while True:
        done, _ = await asyncio.wait({task}, timeout=DISCONNECT_POLL_S)
        if done:
            return task.result()
        if await request.is_disconnected():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, BlacksoilError):
                await task
            return Response(status_code=499)  # nobody reads it; nginx's "client closed request"


def _shown(value: Any) -> str:
    if isinstance(value, dict):
        return "an object"
    try:
        return json.dumps(value)[:80]
    except (TypeError, ValueError):
        return repr(value)[:80]


def create_app(pool: ReplicaPool, *, sink: ExperienceSink | None = None, metrics: GatewayMetrics | None = None,
               default_max_tokens: int = 256, capture_tokens: bool = True, home: str = "") -> FastAPI:
    """The gateway app over an already started pool; `home` (the data directory) never appears in its errors."""
    metrics = metrics or GatewayMetrics()
    gw = Gateway(pool, sink, metrics, default_max_tokens, capture_tokens, home)
    app = FastAPI(title="blacksoil gateway", version="0.1.0")
    app.add_middleware(JsonBodiesOnly)
    app.state.gateway = gw
    app.state.pool = pool

    @app.exception_handler(BlacksoilError)
    async def _ours(_: Request, e: BlacksoilError) -> JSONResponse:
        headers = {"Retry-After": str(max(1, round(e.retry_after_s)))} if isinstance(e, RetryableError) else None
        if e.status_code >= 500:
            log.warning("request failed: %s", e.message)
        return JSONResponse(http_error_body(e, gw.home), status_code=e.status_code, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, e: RequestValidationError) -> JSONResponse:
        first = e.errors()[0] if e.errors() else {"loc": (), "msg": "invalid request"}
        loc = [str(x) for x in first.get("loc", ()) if x != "body"]
        param = ".".join(loc) or None
        if first.get("type") == "json_invalid":
            ctx = first.get("ctx")
            why = ctx.get("error", first["msg"]) if isinstance(ctx, dict) else first["msg"]
            return error_response(400, f"the request body is not valid JSON ({why}); "
                                  "send a JSON object", "invalid_request_error", "invalid_json", None)
        if first.get("type") == "extra_forbidden":
            return error_response(400, f"{param}: unknown field; the API accepts the documented OpenAI fields "
                                  "only (engine-specific fields such as n_predict, id_slot or lora are refused); "
                                  "remove it", "invalid_request_error", "unknown_field", param)
        return error_response(400, f"{param or 'body'}: {first['msg']} (got {_shown(first.get('input'))}); "
                              "fix that field",
                              "invalid_request_error", "invalid_value", param)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, e: StarletteHTTPException) -> JSONResponse:
        msg = str(e.detail)
        if e.status_code == 404:
            msg = "no such route; the gateway serves /v1/chat/completions, /v1/completions, /v1/models, " \
                  "/health and /metrics"
        return error_response(e.status_code, msg, _HTTP_TYPES.get(e.status_code, "server_error"), str(e.status_code))

    @app.exception_handler(Exception)
    async def _bug(_: Request, e: Exception) -> JSONResponse:
        log.exception("unexpected error")
        return error_response(500, f"internal error ({type(e).__name__}); see the gateway log", "internal_error",
                              "500")

    async def _serve(kind: str, request: Request, req: ChatRequest | CompletionRequest) -> Any:
        body = req.model_dump(exclude_none=True)
        session, priority = session_and_priority(dict(request.headers), body)
        # The platform's auth layer sets the tenant from the API key; without it the header (or default) names it.
        tenant = getattr(request.state, "tenant", None) or request.headers.get("x-tenant") or "default"
        if len(tenant) > TENANT_ID_MAX:
            raise UserError(f"X-Tenant is {len(tenant)} characters; use at most {TENANT_ID_MAX}", param="X-Tenant",
                            code="invalid_value")
        call = Call(kind, body, session, priority, tenant)
        call.trace = gw.tracing.start(kind, pool.served_name, body, request.headers)
        try:
            if req.stream:
                events = await gw.stream(call)
                return StreamingResponse(events, media_type="text/event-stream",
                                         headers={"Cache-Control": "no-cache", "X-Request-Id": call.id})
            return await until_disconnect(request, gw.complete(call))
        except BlacksoilError as e:  # refused before or failed during the call: its span ends with the error
            call.trace.failed(type(e).__name__, e.message)
            raise

    @app.post("/v1/chat/completions")
    async def chat(request: Request, req: ChatRequest) -> Any:
        return await _serve("chat", request, req)

    @app.post("/v1/completions")
    async def completions(request: Request, req: CompletionRequest) -> Any:
        return await _serve("completions", request, req)

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        versions = sorted({r.adapter_version for r in pool.info()})
        return {"object": "list", "data": [{"id": pool.served_name, "object": "model", "created": 0,
                                            "owned_by": "blacksoil", "adapter_versions": versions}]}

    @app.get("/health")
    async def health() -> Response:
        infos = pool.info()
        ready = [i for i in infos if i.status == "ready"]
        # Unauthenticated: the engines' own addresses stay out (they are reachable only through the gateway).
        body = {"status": "ok" if ready else "unavailable", "model": pool.served_name,
                # Which adapter answers: a restart serves the latest promoted one (or the pinned one, or base).
                "adapter_versions": sorted({i.adapter_version for i in ready}),
                "replicas": [{k: v for k, v in i.__dict__.items() if k != "url"} for i in infos]}
        if not ready:
            return error_response(503, "no engine replica is ready yet; retry shortly", "server_unavailable",
                                  "503", headers={"Retry-After": "1"})
        return JSONResponse(body)

    @app.get("/metrics")
    async def prometheus() -> Response:
        metrics.replicas.clear()
        for i in pool.info():
            metrics.replicas.labels(i.name, pool.served_name, i.adapter_version, i.status).set(1)
        return Response(metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8")

    app.include_router(replica_router(pool, pool.config.admin_key))  # engines others run join the pool (admin key)
    return app
