"""The console's HTTP surface: the page at /console, its shipped assets, and JSON under /v1/console/.

Data routes appear in the gateway's OpenAPI schema; the page only polls them (no CDN, no template engine).
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any, Literal

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, HTMLResponse
from pydantic import Field

from blacksoil.apibase import RequestBody
from blacksoil.console.context import ConsoleContext
from blacksoil.errors import NotFoundError
from blacksoil.experience.api import tenant_of

__all__ = ["Decision", "View", "console_router"]

_HERE = Path(__file__).parent
_STATIC = _HERE / "static"
_ASSETS = {"console.js": "text/javascript", "console.css": "text/css", "chart.umd.min.js": "text/javascript"}
View = Literal["serving", "agents", "experience", "learning", "scheduling", "agentscore"]


class Decision(RequestBody):
    """A human's decision on a pending tool call, taken from the console."""

    by: str = Field(default="console", min_length=1, max_length=200)
    """Who decides (audited)."""
    note: str = Field(default="", max_length=2000)
    """Why (audited; a denial's note is what the model is told)."""


def console_router(ctx: ConsoleContext) -> APIRouter:
    """Routes of the console over one context."""
    router = APIRouter()
    page = (_HERE / "page.html").read_text()

    @router.get("/console", response_class=HTMLResponse, include_in_schema=False)
    def console_page() -> HTMLResponse:
        return HTMLResponse(page)

    @router.get("/console/static/{name}", include_in_schema=False)
    def console_asset(name: str) -> FileResponse:
        if name not in _ASSETS:  # a fixed list: no path traversal through {name}
            raise NotFoundError(f"no console asset {name!r}; the console ships {', '.join(sorted(_ASSETS))}")
        return FileResponse(_STATIC / name, media_type=_ASSETS[name])

    @router.get("/v1/console/{view}", tags=["console"], summary="Data of one console view")
    def console_view(view: View, request: Request) -> dict[str, Any]:
        """Cards, chart series and tables of a view, scoped to the caller's tenant where data has tenants."""
        tenant = tenant_of(request)
        module = importlib.import_module(f"blacksoil.console.views.{view}")
        data: dict[str, Any] = module.collect(ctx, tenant)
        data["view"] = view
        data["tenant"] = tenant
        return data

    @router.post("/v1/console/agents/{run_id}/calls/{call_id}/{decision}", tags=["console"],
                 summary="Approve or deny a pending tool call")
    def console_decide(run_id: str, call_id: str, decision: Literal["approve", "deny"], body: Decision,
                       request: Request) -> dict[str, Any]:
        """Record a human decision through the agent runtime's approval machinery, then resume the run."""
        from blacksoil.console.views.agents import decide

        return decide(ctx, tenant_of(request), run_id, call_id, decision == "approve", body.by, body.note)

    return router
