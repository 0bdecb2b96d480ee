"""The gateway's replica API: engines that others run (a Kubernetes operator's serving pods) join and leave the pool.

    POST   /v1/replicas          {api_base, api_key, slots?, owner?} -> 201 {name, ...}; 200 when already registered
    GET    /v1/replicas          every replica of the pool: name, status, kind, api_base, adapter, in flight, owner
    DELETE /v1/replicas/{name}   ?drain=true (default: in-flight requests finish first) -> 200 {name, status}

A registered engine is a llama.cpp server (the one `python -m blacksoil.scheduling.backends.k8s_engine` runs) and
gets the embedded engine's treatment: slot affinity, token capture, stream cancellation, health probes
(ReplicaPool.add_remote). Only replicas registered here can be removed here; the gateway's own engines cannot.

Protected (tests/serving/test_replica_api.py): every route needs `Authorization: Bearer <serving.admin_key>`, the
same bearer scheme as the platform's tenant keys (compared in constant time); no key is a 401, any other key, a
tenant's included, a 403; with no admin key configured the routes answer 404 and change nothing. Bodies are
RequestBody models (unknown fields, bad URLs and out-of-range slots are 400s in the one error shape). An engine
that does not answer with the given key is refused before it joins the pool.
Not protected: the admin key travels in clear without TLS (put the gateway behind TLS, or keep it on the cluster
network); an admin may point the gateway at any URL it can reach. A body that is not JSON at all is refused (400,
415) before the key is checked, as on every route.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
from typing import Any

import httpx
from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from pydantic import Field

from blacksoil.apibase import RequestBody
from blacksoil.errors import AuthError, NotFoundError, PolicyDenied, RetryableError, UserError
from blacksoil.serving.pool import ReplicaInfo, ReplicaPool

PREFIX = "/v1/replicas"
"""The admin API's paths: the platform's tenant authentication lets them through to the admin-key check here."""
PROBE_TIMEOUT_S = 10.0


class ReplicaIn(RequestBody):
    """An engine to put behind the gateway."""

    api_base: str = Field(pattern=r"^https?://[A-Za-z0-9.\-\[\]:]+:\d{1,5}/v1$", max_length=300)
    """OpenAI base URL of the engine, with its port: http://10.1.2.3:8080/v1."""
    api_key: str = Field(min_length=1, max_length=512)
    """Bearer key the engine requires (the gateway sends it on every call; it is never shown again)."""
    slots: int | None = Field(default=None, ge=1, le=1024)
    """Parallel sequences of the engine (None = the gateway's serving.slots)."""
    owner: str | None = Field(default=None, min_length=1, max_length=300)
    """Who registered it (e.g. `namespace/deployment`): GET shows it, so an operator finds its own replicas."""


def _view(i: ReplicaInfo, owner: str | None) -> dict[str, Any]:
    return {"name": i.name, "status": i.status, "kind": i.kind, "api_base": i.url, "adapter_version": i.adapter_version,
            "inflight": i.inflight, "accepting_new_sessions": i.accepting_new_sessions, "owner": owner}


def replica_router(pool: ReplicaPool, admin_key: str | None) -> APIRouter:
    """The replica API over `pool`, guarded by `admin_key` (None: the API is off)."""
    owners: dict[str, str | None] = {}
    """Replicas registered here → their owner (only these may be removed here)."""
    lock = asyncio.Lock()  # one registration at a time: a resent POST must find the first one's replica

    def admin(request: Request) -> None:
        if not admin_key:
            raise NotFoundError("the replica API is off; set serving.admin_key (BLACKSOIL_SERVING__ADMIN_KEY) on the "
                                "gateway to enable it")
        header = request.headers.get("authorization", "")
        token = header[7:].strip() if header.lower().startswith("bearer ") else ""
        if not token:
            raise AuthError("missing admin key; send `Authorization: Bearer <serving.admin_key>`")
        if not hmac.compare_digest(token.encode(), admin_key.encode()):
            raise PolicyDenied("this key may not manage replicas; the replica API takes the gateway's admin key "
                               "(serving.admin_key), not a tenant's")

    router = APIRouter(prefix=PREFIX, tags=["replicas"], dependencies=[Depends(admin)])

    @router.get("")
    async def list_replicas() -> dict[str, Any]:
        return {"object": "list", "data": [_view(i, owners.get(i.name)) for i in pool.info()]}

    @router.post("", status_code=201)
    async def register(body: ReplicaIn) -> Any:
        async with lock:
            same = [i for i in pool.info() if i.url == body.api_base]
            if same:  # idempotent: a retried registration finds the replica the first one made
                return JSONResponse(_view(same[0], owners.get(same[0].name)), status_code=200)
            await asyncio.to_thread(_check_engine, body.api_base, body.api_key)
            replica = await asyncio.to_thread(pool.add_remote, body.api_base, body.api_key, slots=body.slots)
            owners[replica.name] = body.owner
        info = next(i for i in pool.info() if i.name == replica.name)
        return _view(info, body.owner)

    @router.delete("/{name}")
    async def remove(name: str, drain: bool = True) -> dict[str, Any]:
        if name not in owners:
            raise NotFoundError(f"no replica {name!r} was registered through this API (registered: "
                                f"{', '.join(sorted(owners)) or 'none'}); GET {PREFIX} lists them")
        with contextlib.suppress(NotFoundError):  # already gone from the pool (stopped elsewhere): that is done
            await asyncio.to_thread(pool.remove_replica, name, drain=drain)
        owners.pop(name, None)
        return {"name": name, "status": "removed"}

    return router


def _check_engine(api_base: str, api_key: str) -> None:
    """Refuse an engine that does not answer GET /slots with `api_key` (what the pool's health probe asks)."""
    url = api_base.removesuffix("/v1") + "/slots"
    try:
        r = httpx.get(url, headers={"Authorization": f"Bearer {api_key}"}, timeout=PROBE_TIMEOUT_S)
    except httpx.HTTPError as e:
        raise RetryableError(f"the engine at {api_base} does not answer ({type(e).__name__}); register it once it "
                             "is up", retry_after_s=5.0) from None
    if r.status_code in (401, 403):
        raise UserError(f"the engine at {api_base} refuses api_key ({r.status_code}); send the key it was started "
                        "with", param="api_key", code="invalid_value")
    if r.status_code != 200:
        raise UserError(f"the engine at {api_base} answers GET /slots with {r.status_code}; register a llama.cpp "
                        "server started with its /slots endpoint (k8s_engine, or llama-server --slots)",
                        param="api_base", code="invalid_value")
