"""Assemble a ready AgentRuntime: model endpoint (a running gateway or an embedded one), store, sink.

Used by the CLI, AgentScore and the tests; everything it starts stops when the context exits.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from blacksoil.agents.config import AgentsConfig
from blacksoil.agents.loop import AgentRuntime
from blacksoil.agents.model import ModelClient
from blacksoil.agents.spec import AgentTeam
from blacksoil.agents.store import RunStore
from blacksoil.contracts import ExperienceSink
from blacksoil.errors import UserError
from blacksoil.factories.manufacturing.config import ManufacturingConfig
from blacksoil.security.config import SecurityConfig

if TYPE_CHECKING:
    from blacksoil.config import Settings

__all__ = ["RuntimeSetup", "decide_call", "open_runtime", "run_store"]


@dataclass(frozen=True)
class RuntimeSetup:
    """What the agent runtime takes from the root settings, resolved once by the caller (CLI, console, root)."""

    home: Path
    """The home folder: run store, tool sets' per-run state."""
    agents: AgentsConfig = field(default_factory=AgentsConfig)
    security: SecurityConfig = field(default_factory=SecurityConfig)
    manufacturing: ManufacturingConfig = field(default_factory=ManufacturingConfig)
    """The manufacturing tool set's plants (RUL model, job-shop workers)."""
    root: Settings | None = None
    """The root settings an embedded gateway starts with when no gateway URL is given (None: a URL is required)."""

    @classmethod
    def from_settings(cls, s: Settings) -> RuntimeSetup:
        return cls(s.home, s.agents, s.security, s.manufacturing, s)

    @property
    def audit_path(self) -> Path:
        """The audit log and approval store the console and `blacksoil security audit` read."""
        return self.home / self.security.store_file

    @property
    def store_path(self) -> Path:
        """The durable run store."""
        return self.home / self.agents.store_file

    @property
    def toolsets_dir(self) -> Path:
        """Per-run state of stateful tool sets (one subfolder each, e.g. manufacturing/<run>.json for the plant)."""
        return self.home / "agents" / "toolsets"


def run_store(setup: RuntimeSetup) -> RunStore:
    """The run store under the setup's home."""
    return RunStore(setup.store_path)


@contextmanager
def open_runtime(
    team: AgentTeam, setup: RuntimeSetup, *, base_url: str | None = None, model: str | None = None,
    sink: ExperienceSink | None = None, new_sink: Callable[[], ExperienceSink] | None = None,
    client_class: type[ModelClient] = ModelClient,
) -> Iterator[AgentRuntime]:
    """A runtime for `team`; without a base URL (argument or agents.gateway_url) an embedded gateway starts.

    The runs' experience goes to `sink`; without one, to the embedded gateway's sink, or (outside gateway) to a
    sink `new_sink()` makes, closed with the runtime. The caller holding the root settings passes the platform's
    sink factory: this pillar sits below the composition root. `client_class` builds the model client
    (AgentScore passes a metering subclass).
    """
    cfg = setup.agents
    url = base_url or cfg.gateway_url
    if setup.root is not None:  # OTLP export of invoke_agent / execute_tool spans when [serving.tracing] asks
        from blacksoil.serving.tracing import install

        install(setup.root.serving.tracing)
    with ExitStack() as stack:
        if url is None:
            from blacksoil.serving.launch import gateway

            if setup.root is None:
                raise UserError("no model endpoint: set agents.gateway_url (or pass --base-url), or build the "
                                "runtime with RuntimeSetup.from_settings so an embedded gateway can start")
            gw = stack.enter_context(gateway(setup.root))
            url, model = gw.openai_base_url, model or gw.model
            sink = sink if sink is not None else gw.sink
        elif sink is None and new_sink is not None:
            own = new_sink()
            stack.callback(own.close)
            sink = own
        client = client_class(
            url, model=model, api_key=cfg.api_key, timeout_s=cfg.request_timeout_s,
            max_tokens=cfg.completion_max_tokens,
            temperature=cfg.temperature,
        )  # fmt: skip
        stack.callback(client.close)
        store = run_store(setup)
        stack.callback(store.close)
        runtime = AgentRuntime(team, model=client, store=store, config=cfg, sink=sink, security=setup.security,
                               toolsets_dir=setup.toolsets_dir, plant=(setup.home, setup.manufacturing),
                               audit_path=setup.audit_path)
        stack.callback(runtime.close)
        yield runtime


def decide_call(team: AgentTeam, setup: RuntimeSetup, run_id: str, call_id: str, *, approve: bool, by: str,
                note: str = "") -> str:
    """Record a human's decision on a pending call without a model; returns the root run to resume."""
    from blacksoil.agents.guard import Guard
    from blacksoil.agents.loop import policy_paths

    store = run_store(setup)
    try:
        guard = Guard(team.agents, policy_paths(team), setup.audit_path, security=setup.security)
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
