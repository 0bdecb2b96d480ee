"""HTTP API of the agents pillar under `/v1/agents`: specs, runs, their event stream, approvals, cancel, resume.

Runs are driven in the gateway process by background threads over the same durable RunStore the CLI uses; every
step writes its event in the same transaction as the step, so the stream (`text/event-stream`, resumable with
`Last-Event-ID`) is read from the store and a reconnecting client misses nothing, also across a gateway restart.

What is protected, and what is not (tests in tests/agents/test_agent_api*.py):
- Protected: tenant isolation. Specs, runs, events and approvals belong to the caller's tenant (the API key's,
  set by the gateway's auth); another tenant's ids answer the same 404 as ids that do not exist.
- Protected: a spec registered over HTTP cannot reach past the operator's choices: its tool sets are the shipped
  short names or modules listed in agents.api_toolsets, its policy files are names in `<home>/agents/policies/`,
  it may not start MCP servers (they run commands on the gateway host), and its tenant is the caller's.
- Protected: every tool call of an API run goes through the same Cedar policies, approvals (an agent cannot
  approve its own call; the rule of two) and audit as the CLI's; approving goes through the same code path.
- Protected: a resent `Idempotency-Key` starts the run once (the key is stored as a hash, per tenant).
- Not protected: who approves. `by` is the identity the caller states; the API key only proves the tenant.
- Not protected: cancel stops a run between two steps; a model call or tool call in flight finishes first.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import threading
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, Literal

import yaml
from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import StreamingResponse
from pydantic import Field

from blacksoil.agents.launcher import RuntimeSetup, decide_call, open_runtime
from blacksoil.agents.loop import start_run as record_run
from blacksoil.agents.spec import AgentTeam, team_from_dict
from blacksoil.agents.store import RunRecord, RunStore
from blacksoil.agents.tools import TOOLSETS
from blacksoil.apibase import RequestBody, check_json
from blacksoil.contracts import ExperienceSink
from blacksoil.errors import BlacksoilError, ConfigError, NotFoundError, UserError

__all__ = ["RunDriver", "agents_router", "vet_team"]

log = logging.getLogger(__name__)

_FINAL = ("completed", "stopped", "failed")
_SPEC_MAX_BYTES = 256_000
_KEEPALIVE_S = 15.0


class StartRun(RequestBody):
    """A new run of a registered spec."""

    task: str = Field(min_length=1, max_length=20000)
    """What the agent should do."""
    user: str | None = Field(default=None, max_length=200)
    """The human the run acts for (the policies' principal user); default `api`."""
    agent: str | None = Field(default=None, max_length=200)
    """Agent of the team to start with (default: the spec's entry agent)."""


class ApprovalBody(RequestBody):
    """A human's decision on a call that waits for approval."""

    decision: Literal["approve", "deny"]
    """approve runs the call with the arguments shown; deny tells the model it was denied."""
    by: str = Field(min_length=1, max_length=200)
    """Who decides (audited); an agent cannot approve its own call."""
    note: str = Field(default="", max_length=2000)
    """Why (audited; a denial's note is told to the model)."""
    resume: bool = True
    """Resume the run right away."""


def _tenant(request: Request) -> str:
    return str(getattr(request.state, "tenant", None) or request.headers.get("x-tenant") or "default")


def policies_dir(setup: RuntimeSetup) -> Path:
    """Where the operator puts the Cedar files that specs registered over HTTP may name."""
    return setup.home / "agents" / "policies"


def vet_team(data: Any, tenant: str, setup: RuntimeSetup, source: str) -> AgentTeam:
    """Validate a spec sent over HTTP: the CLI's checks, then what a remote tenant may not ask for."""
    team = team_from_dict(data, source)
    allowed = set(TOOLSETS) | set(setup.agents.api_toolsets)
    folder = policies_dir(setup).resolve()
    agents = []
    for a in team.agents:
        if a.tenant not in ("default", tenant):
            raise ConfigError(f"{source}: agent {a.name!r} names tenant {a.tenant!r}; runs over the API belong to "
                              f"your API key's tenant {tenant!r}: drop `tenant`", param="tenant")  # fmt: skip
        for ref in a.tools:
            if ref not in allowed:
                raise ConfigError(f"{source}: tool set {ref!r} is not offered over the API; use one of "
                                  f"{sorted(allowed)} or ask the operator to add it to agents.api_toolsets",
                                  param="tools")  # fmt: skip
        if a.mcp_servers:
            raise ConfigError(f"{source}: agent {a.name!r} starts MCP servers, which run commands on the gateway "
                              "host; register MCP agents from the CLI instead", param="mcp_servers")  # fmt: skip
        policies = []
        for name in a.policies:
            path = (folder / name).resolve()
            if path.parent != folder or not path.is_file():
                raise ConfigError(f"{source}: policy file {name!r} is not in the operator's policy folder; name a "
                                  f"file of {folder} (no paths)", param="policies")  # fmt: skip
            policies.append(str(path))
        agents.append(a.model_copy(update={"tenant": tenant, "policies": policies}))
    return AgentTeam(agents=agents, source=source).check()


def _parse_spec(raw: bytes, content_type: str) -> Any:
    if len(raw) > _SPEC_MAX_BYTES:
        raise UserError(f"the spec is {len(raw)} bytes; send at most {_SPEC_MAX_BYTES}", code="too_large")
    text = raw.decode("utf-8", errors="strict") if raw else ""
    try:
        data = json.loads(text) if "json" in content_type else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as e:
        kind = "JSON" if "json" in content_type else "YAML"
        raise UserError(f"the spec is not valid {kind} ({str(e).splitlines()[0]}); send a spec like "
                        "examples/agents/plant_operator.yaml", code="invalid_spec") from None  # fmt: skip
    check_json(data)
    return data


def _key_hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


class RunDriver:
    """Drives API runs in background threads of the gateway process; one driver thread per run at a time."""

    def __init__(self, setup: RuntimeSetup, base_url: str | None, sink: ExperienceSink | None) -> None:
        self.setup = setup
        self.base_url = base_url
        self.sink = sink
        self._active: set[str] = set()
        self._lock = threading.Lock()

    def active(self, run_id: str) -> bool:
        with self._lock:
            return run_id in self._active

    def drive(self, team: AgentTeam, run_id: str) -> bool:
        """Drive `run_id` (a root run) in the background; False when this process drives it already."""
        if self.base_url is None:
            raise ConfigError("the gateway has no model endpoint for agent runs; set agents.gateway_url")
        with self._lock:
            if run_id in self._active:
                return False
            self._active.add(run_id)
        threading.Thread(target=self._drive, args=(team, run_id), daemon=True, name=f"agent-run-{run_id}").start()
        return True

    def _drive(self, team: AgentTeam, run_id: str) -> None:
        try:
            with open_runtime(team, self.setup, base_url=self.base_url, sink=self.sink) as rt:
                rt.drive(run_id)
        except Exception as e:  # a crash of the runtime must end the run visibly, not silently in a thread
            log.exception("agent run %s failed", run_id)
            message = e.message if isinstance(e, BlacksoilError) else f"{type(e).__name__}: {e}"
            store = RunStore(self.setup.store_path)
            try:
                if store.get_run(run_id).status not in _FINAL:
                    store.update_run(run_id, status="failed", reason="error", answer=f"error: {message}")
            finally:
                store.close()
        finally:
            with self._lock:
                self._active.discard(run_id)


def _entry(run: RunRecord) -> str:
    agents = run.team.get("agents") or [{}]
    return str(agents[0].get("name", ""))


def agents_router(setup: RuntimeSetup, driver: RunDriver) -> APIRouter:
    """Router with the `/v1/agents` routes; runs live in `setup`'s run store and are driven by `driver`."""
    router = APIRouter(prefix="/v1/agents", tags=["agents"])
    store = RunStore(setup.store_path)

    def own_run(tenant: str, spec: str, run_id: str) -> RunRecord:
        try:
            run = store.get_run(run_id)
        except NotFoundError:
            run = None
        if run is None or run.tenant != tenant or run.parent_run_id is not None or _entry(run) != spec:
            raise NotFoundError(f"run {run_id!r} of agent {spec!r} not found; list runs with GET "
                                f"/v1/agents/{spec}/runs", param="run_id")  # fmt: skip
        return run

    def own_team(tenant: str, spec: str) -> AgentTeam:
        data = store.get_spec(tenant, spec)
        if data is None:
            raise NotFoundError(f"agent spec {spec!r} not found; register it with POST /v1/agents", param="spec")
        return AgentTeam.model_validate(data)

    def view(run: RunRecord) -> dict[str, Any]:
        pending = [c for rid in [run.run_id, *store.children(run.run_id)] for c in store.calls(rid)
                   if c.status == "awaiting_approval"]  # fmt: skip
        return {
            "object": "agent.run", "id": run.run_id, "spec": _entry(run), "agent": run.agent, "task": run.task,
            "user": run.user_id, "status": run.status, "reason": run.reason, "answer": run.answer,
            "steps": run.steps, "tokens": run.tokens, "wall_s": round(run.wall_s, 3), "flags": run.flags,
            "driving": driver.active(run.run_id), "created_at": run.created_at, "updated_at": run.updated_at,
            "pending": [{"run_id": c.run_id, "call_id": c.call_id, "tool": c.name, "arguments": c.arguments,
                         "reasons": c.reasons} for c in pending],
        }  # fmt: skip

    @router.post("", summary="Register (or replace) an agent spec",
                 openapi_extra={"requestBody": {"required": True, "content": {
                     "application/yaml": {"schema": {"type": "string"}},
                     "application/json": {"schema": {"type": "object"}}}}})  # fmt: skip
    async def register_spec(request: Request) -> dict[str, Any]:
        """A spec as YAML or JSON (one agent, or `agents: [...]`); the entry agent's name names it."""
        tenant = _tenant(request)
        data = _parse_spec(await request.body(), request.headers.get("content-type", ""))
        team = vet_team(data, tenant, setup, "the spec")
        store.put_spec(tenant, team.entry.name, team.model_dump())
        return {"object": "agent.spec", "name": team.entry.name, "agents": [a.name for a in team.agents],
                "tenant": tenant}  # fmt: skip

    @router.get("", summary="List the tenant's agent specs")
    def list_specs(request: Request) -> dict[str, Any]:
        rows = store.list_specs(_tenant(request))
        data = [{"object": "agent.spec", "name": n, "agents": [a["name"] for a in t["agents"]], "updated_at": ts}
                for n, t, ts in rows]  # fmt: skip
        return {"object": "list", "data": data}

    @router.delete("/memory", summary="Purge the tenant's long-term agent memory")
    def purge_memory(request: Request) -> dict[str, Any]:
        """Delete every fact the caller tenant's agents remembered (all agents)."""
        from blacksoil.agents.memory import MemoryStore, memory_path

        tenant = _tenant(request)
        facts = MemoryStore(memory_path(setup.toolsets_dir))
        try:
            return {"object": "agent.memory.purge", "tenant": tenant, "facts_deleted": facts.purge(tenant)}
        finally:
            facts.close()

    @router.get("/{spec}", summary="One agent spec")
    def get_spec(spec: str, request: Request) -> dict[str, Any]:
        team = own_team(_tenant(request), spec)
        return {"object": "agent.spec", "name": spec, "spec": team.model_dump(exclude={"source"})}

    @router.post("/{spec}/runs", summary="Start a run", status_code=201)
    def start_run(spec: str, body: StartRun, request: Request,
                  idempotency_key: str | None = Header(default=None, max_length=200)) -> dict[str, Any]:
        """Start a run in the background; a resent `Idempotency-Key` answers the run it started."""
        tenant = _tenant(request)
        team = own_team(tenant, spec)
        if idempotency_key is not None:
            earlier = store.run_for_key(tenant, _key_hash(idempotency_key))
            if earlier is not None:
                return view(store.get_run(earlier))
        run_id = uuid.uuid4().hex[:12]
        with store.transaction():  # the key and the run commit together: a refused task leaves no key behind
            if idempotency_key is not None:
                bound = store.bind_key(tenant, _key_hash(idempotency_key), run_id)
                if bound != run_id:  # a concurrent request with the same key won
                    return view(store.get_run(bound))
            record_run(store, team, body.task, agent=body.agent, user=body.user or "api", run_id=run_id)
        driver.drive(team, run_id)
        return view(store.get_run(run_id))

    @router.get("/{spec}/runs", summary="List the spec's runs (newest first)")
    def list_runs(spec: str, request: Request, limit: int = Query(default=20, ge=1, le=200)) -> dict[str, Any]:
        tenant = _tenant(request)
        own_team(tenant, spec)
        runs = [r for r in store.list_runs(limit=limit * 4, tenant=tenant)
                if r.parent_run_id is None and _entry(r) == spec][:limit]  # fmt: skip
        return {"object": "list", "data": [view(r) for r in runs]}

    @router.get("/{spec}/runs/{run_id}", summary="A run's state")
    def get_run(spec: str, run_id: str, request: Request) -> dict[str, Any]:
        return view(own_run(_tenant(request), spec, run_id))

    @router.get("/{spec}/runs/{run_id}/events", summary="The run's steps as Server-Sent Events",
                response_class=StreamingResponse,
                responses={200: {"content": {"text/event-stream": {"schema": {"type": "string"}}}}})
    def run_events(spec: str, run_id: str, request: Request,
                   last_event_id: str | None = Header(default=None, max_length=20),
                   after: int | None = Query(default=None, ge=0, description="Same as the Last-Event-ID header."),
                   follow: bool = Query(default=True, description="Keep the stream open until the run ends."),
                   ) -> StreamingResponse:  # fmt: skip
        """Events (status, message, model_call, tool_call, approval_request, result) from the durable store;
        reconnect with `Last-Event-ID` to get exactly the events after it."""
        own_run(_tenant(request), spec, run_id)
        start = after or 0
        if last_event_id is not None:
            if not last_event_id.strip().isdigit():
                raise UserError(f"Last-Event-ID {last_event_id!r} is not an event id; send the `id:` of the last "
                                "event you received", param="Last-Event-ID")  # fmt: skip
            start = max(start, int(last_event_id))
        poll = setup.agents.api_stream_poll_s

        async def stream() -> AsyncIterator[str]:
            last, quiet = start, 0.0
            while True:
                status = store.get_run(run_id).status  # read before the events: a final status has its event
                events = store.events(run_id, after=last)
                for e in events:
                    last = e.event_id
                    payload = {"id": e.event_id, "run_id": e.run_id, "kind": e.kind, "ts": e.ts, **e.data}
                    yield f"id: {e.event_id}\nevent: {e.kind}\ndata: {json.dumps(payload, default=str)}\n\n"
                if events:
                    quiet = 0.0
                    continue
                if status in _FINAL or not follow:
                    return
                await asyncio.sleep(poll)
                quiet += poll
                if quiet >= _KEEPALIVE_S:
                    quiet = 0.0
                    yield ": keep-alive\n\n"

        return StreamingResponse(stream(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    @router.post("/{spec}/runs/{run_id}/approvals/{call_id}", summary="Approve or deny a call that waits")
    def decide(spec: str, run_id: str, call_id: str, body: ApprovalBody, request: Request) -> dict[str, Any]:
        """Record the decision (audited, once); with `resume` the run continues in the background."""
        run = own_run(_tenant(request), spec, run_id)
        return decide_and_resume(setup, driver, run, call_id, approve=body.decision == "approve", by=body.by,
                                 note=body.note, resume=body.resume)  # fmt: skip

    @router.post("/{spec}/runs/{run_id}/cancel", summary="Cancel a run before its next step")
    def cancel(spec: str, run_id: str, request: Request) -> dict[str, Any]:
        run = own_run(_tenant(request), spec, run_id)
        for rid in [run.run_id, *store.children(run.run_id)]:
            store.cancel(rid)
        return view(store.get_run(run_id))

    @router.post("/{spec}/runs/{run_id}/resume", summary="Resume a run (after a gateway crash or its approvals)")
    def resume(spec: str, run_id: str, request: Request) -> dict[str, Any]:
        """Continue from the last committed step; a side-effecting call a crash interrupted is not rerun."""
        run = own_run(_tenant(request), spec, run_id)
        if run.status not in _FINAL and not driver.active(run_id):
            store.claim(run_id)  # refuses while another live process drives the run
            driver.drive(AgentTeam.model_validate(run.team), run_id)
        return view(store.get_run(run_id))

    return router


def decide_and_resume(setup: RuntimeSetup, driver: RunDriver | None, run: RunRecord, call_id: str, *,
                      approve: bool, by: str, note: str, resume: bool) -> dict[str, Any]:  # fmt: skip
    """The one approval path of the API and the console: decide a call of `run` (or of its worker sub-runs)."""
    store = RunStore(setup.store_path)
    try:
        owner = next((rid for rid in [run.run_id, *store.children(run.run_id)] if store.get_call(rid, call_id)),
                     run.run_id)  # fmt: skip
    finally:
        store.close()
    team = AgentTeam.model_validate(run.team)
    root = decide_call(team, setup, owner, call_id, approve=approve, by=by, note=note)
    resuming = bool(resume and driver is not None and driver.base_url is not None and driver.drive(team, root))
    return {"object": "agent.approval", "run_id": run.run_id, "call_id": call_id, "approved": approve, "by": by,
            "resuming": resuming}  # fmt: skip
