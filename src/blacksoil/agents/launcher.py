"""Assemble a ready AgentRuntime: model endpoint (a running gateway or an embedded one), store, sink.

Used by the CLI, AgentScore and the tests; everything it starts stops when the context exits.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager

from blacksoil.agents.loop import AgentRuntime
from blacksoil.agents.model import ModelClient
from blacksoil.agents.spec import AgentTeam
from blacksoil.agents.store import RunStore
from blacksoil.contracts import ExperienceSink
from blacksoil.errors import UserError


def run_store() -> RunStore:
    """The run store under settings().home."""
    from blacksoil.config import settings

    s = settings()
    return RunStore(s.home / s.agents.store_file)


@contextmanager
def open_runtime(
    team: AgentTeam, *, base_url: str | None = None, model: str | None = None, sink: ExperienceSink | None = None
) -> Iterator[AgentRuntime]:
    """A runtime for `team`; without a base URL (argument or agents.gateway_url) an embedded gateway starts."""
    from blacksoil.config import settings

    s = settings()
    cfg = s.agents
    url = base_url or cfg.gateway_url
    with ExitStack() as stack:
        if url is None:
            from blacksoil.serving.launch import gateway

            gw = stack.enter_context(gateway())
            url, model = gw.openai_base_url, model or gw.model
            sink = sink if sink is not None else gw.sink
        elif sink is None:
            from blacksoil.platform import make_sink

            own = make_sink(s)
            stack.callback(own.close)
            sink = own
        client = ModelClient(
            url, model=model, api_key=cfg.api_key, timeout_s=cfg.request_timeout_s,
            max_tokens=cfg.completion_max_tokens,
            temperature=cfg.temperature,
        )  # fmt: skip
        stack.callback(client.close)
        store = run_store()
        stack.callback(store.close)
        runtime = AgentRuntime(team, model=client, store=store, config=cfg, sink=sink)
        stack.callback(runtime.close)
        yield runtime


def decide_call(team: AgentTeam, run_id: str, call_id: str, *, approve: bool, by: str, note: str = "") -> str:
    """Record a human's decision on a pending call without a model; returns the root run to resume."""
    from blacksoil.agents.guard import Guard
    from blacksoil.agents.loop import policy_paths

    store = run_store()
    try:
        guard = Guard(team.agents, policy_paths(team))
        rec = store.get_call(run_id, call_id)
        if rec is None or rec.status != "awaiting_approval":
            state = "does not exist" if rec is None else f"is {rec.status}"
            raise UserError(
                f"call {call_id!r} of run {run_id!r} {state}; only calls awaiting approval can be decided "
                f"(see `blacksoil agent show {run_id}`)"
            )
        guard.decide(rec.idempotency_key, approve=approve, by=by, note=note)
        run = store.get_run(run_id)
        while run.parent_run_id is not None:
            run = store.get_run(run.parent_run_id)
        return run.run_id
    finally:
        store.close()
