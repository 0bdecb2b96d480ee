"""HTTP API of the experience pillar: `POST /v1/feedback` (explicit rewards), mounted on the gateway.

The tenant comes from `request.state.tenant` (set by the gateway's auth) or the `X-Tenant` header.

What is protected, and what is not (attack tests in tests/experience/test_tenant_isolation.py):
- Protected: feedback only lands on the caller tenant's sessions/calls; another tenant's ids answer 404.
- Protected: the comment is anonymized before storage; values outside [-1, 1] are refused (400).
- Protected: a resent idempotency key records the feedback once; the key is stored only as a keyed hash.
- Protected: every body error answers the one error shape with message, type, code and param.
- NOT protected: who the tenant is. Without gateway authentication the X-Tenant header is trusted, the
  same trust model as the gateway's own X-Tenant handling.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import Field

from blacksoil.apibase import RequestBody
from blacksoil.errors import BlacksoilError, http_error_body
from blacksoil.experience.store import ExperienceStore


class Feedback(RequestBody):
    """Explicit feedback on a whole session or on one model call."""

    session_id: str | None = Field(default=None, max_length=256)
    """Agent session the feedback is about (give this or call_id)."""
    call_id: str | None = Field(default=None, max_length=256)
    """Gateway request id or event id of one model call (give this or session_id)."""
    value: float = Field(ge=-1.0, le=1.0)
    """Reward in [-1, 1]: thumbs down = -1, thumbs up = 1."""
    comment: str | None = Field(default=None, max_length=4000)
    """Free text; anonymized before storage."""
    idempotency_key: str | None = Field(default=None, max_length=200)
    """Resending the same key records the feedback once."""


def tenant_of(request: Request) -> str:
    """The caller's tenant: set by the gateway's authentication, else the X-Tenant header, else `default`."""
    return str(getattr(request.state, "tenant", None) or request.headers.get("x-tenant") or "default")


def feedback_router(store: Callable[[], ExperienceStore]) -> APIRouter:
    """Router with `POST /v1/feedback`; `store` returns the process's ExperienceStore (created lazily)."""
    router = APIRouter()

    @router.post("/v1/feedback")
    def post_feedback(body: Feedback, request: Request) -> Any:
        tenant = tenant_of(request)
        try:
            created = store().tenant(tenant).add_reward(
                body.value, "feedback", session_id=body.session_id, call_id=body.call_id,
                detail={"comment": body.comment} if body.comment else {},
                dedup_key=f"feedback:{body.idempotency_key}" if body.idempotency_key else None,
            )
        except BlacksoilError as e:  # answered here too, so the router works on an app without our handlers
            return JSONResponse(http_error_body(e), status_code=e.status_code)
        return {"object": "feedback", "recorded": created, "tenant": tenant}

    return router
