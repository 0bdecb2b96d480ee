"""The FastAPI app of the gateway: OpenAI routes, /health, /metrics, and the one JSON error shape.

Every 4xx/5xx, FastAPI's own validation errors and 404s included, answers {"error": {message, type, code, param}}.

Protected (each with a test in tests/serving): malformed or mistyped bodies never reach the engine and never
show a traceback (test_errors.py); a flood of requests meets a bounded queue and a 429, never an unbounded
backlog (test_gateway.py::test_full_queue_answers_429_with_retry_after); a crashing engine cannot take the
gateway down (test_recovery.py); a client that hangs up mid-stream gives its slot back
(test_gateway.py::test_client_disconnect_frees_the_slot).
Not protected: there is no authentication or TLS (the gateway binds 127.0.0.1 unless told otherwise; put it behind
an authenticating proxy before exposing it), the X-Tenant and X-Priority headers are trusted as sent, and there
are no per-tenant rate limits.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from blacksoil.contracts import ExperienceSink
from blacksoil.errors import BlacksoilError, RetryableError
from blacksoil.serving.gateway import Call, Gateway, session_and_priority
from blacksoil.serving.metrics import GatewayMetrics
from blacksoil.serving.pool import ReplicaPool
from blacksoil.serving.protocol import ChatRequest, CompletionRequest

log = logging.getLogger(__name__)
_HTTP_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
               404: "not_found_error", 405: "invalid_request_error", 413: "invalid_request_error",
               422: "invalid_request_error", 429: "rate_limit_error"}


def error_response(status: int, message: str, etype: str, code: str | None = None, param: str | None = None,
                   headers: dict[str, str] | None = None) -> JSONResponse:
    """The one error shape."""
    body = {"error": {"message": message, "type": etype, "code": code, "param": param}}
    return JSONResponse(body, status_code=status, headers=headers)


def create_app(pool: ReplicaPool, *, sink: ExperienceSink | None = None, metrics: GatewayMetrics | None = None,
               default_max_tokens: int = 256, capture_tokens: bool = True) -> FastAPI:
    """The gateway app over an already started pool."""
    metrics = metrics or GatewayMetrics()
    gw = Gateway(pool, sink, metrics, default_max_tokens, capture_tokens)
    app = FastAPI(title="blacksoil gateway", version="0.1.0")
    app.state.gateway = gw
    app.state.pool = pool

    @app.exception_handler(BlacksoilError)
    async def _ours(_: Request, e: BlacksoilError) -> JSONResponse:
        headers = {"Retry-After": str(max(1, round(e.retry_after_s)))} if isinstance(e, RetryableError) else None
        if e.status_code >= 500:
            log.warning("request failed: %s", e.message)
        return error_response(e.status_code, e.message, e.error_type, e.code or str(e.status_code), e.param, headers)

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
        got = first.get("input")
        shown = json.dumps(got)[:80] if not isinstance(got, dict) else "an object"
        return error_response(400, f"{param or 'body'}: {first['msg']} (got {shown}); fix that field",
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
        tenant = getattr(request.state, "tenant", None) or request.headers.get("x-tenant", "default")
        call = Call(kind, body, session, priority, tenant)
        if req.stream:
            events = await gw.stream(call)
            return StreamingResponse(events, media_type="text/event-stream",
                                     headers={"Cache-Control": "no-cache", "X-Request-Id": call.id})
        return await gw.complete(call)

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
        body = {"status": "ok" if ready else "unavailable", "model": pool.served_name,
                "replicas": [i.__dict__ for i in infos]}
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

    return app
