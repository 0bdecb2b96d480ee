"""The composition root: one gateway app carrying every pillar's HTTP surface, and `blacksoil up`.

Pillars stay apart; only this module knows that the feedback API, the console and the auth layer share the app.
"""

from __future__ import annotations

import contextlib
import gc
import hmac
import threading
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from blacksoil.config import Settings
from blacksoil.config import settings as current_settings
from blacksoil.contracts import TENANT_ID_MAX, AdapterVersion, ExperienceSink
from blacksoil.errors import ConfigError, error_body
from blacksoil.experience.sink import StoreSink, make_sink
from blacksoil.serving.replica_api import PREFIX as REPLICA_API

# Probes, aggregate metrics, the API schema and the console's static shell stay open: no tenant data in them.
_OPEN_PATHS = frozenset({"/health", "/metrics", "/console", "/docs", "/openapi.json"})
_OPEN_PREFIXES = ("/console/static/",)


def _auth_error(status: int, message: str) -> JSONResponse:
    return JSONResponse(error_body(message, "authentication_error", str(status), None), status_code=status,
                        headers={"WWW-Authenticate": "Bearer"} if status == 401 else None)


def install_auth(app: FastAPI, api_keys: dict[str, str]) -> None:
    """Bearer API keys map to tenants; the tenant lands in request.state.tenant for every pillar's routes.

    With keys configured a client can never choose its tenant: the X-Tenant header is ignored.
    """

    @app.middleware("http")
    async def _auth(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        path = request.url.path
        if not api_keys:
            tenant = request.headers.get("x-tenant") or "default"
            if len(tenant) > TENANT_ID_MAX:
                return JSONResponse(error_body(f"X-Tenant is {len(tenant)} characters; use at most {TENANT_ID_MAX}",
                                               "invalid_request_error", "invalid_value", "X-Tenant"), status_code=400)
            request.state.tenant = tenant
            return await call_next(request)
        if path in _OPEN_PATHS or path.startswith(_OPEN_PREFIXES):
            return await call_next(request)
        if path.startswith(REPLICA_API):  # takes the gateway's admin key, not a tenant's: checked by its routes
            return await call_next(request)
        header = request.headers.get("authorization", "")
        token = header[7:].strip() if header.lower().startswith("bearer ") else ""
        if not token:
            return _auth_error(401, "missing API key; send `Authorization: Bearer <key>`")
        keyed = next((t for k, t in api_keys.items() if hmac.compare_digest(k, token)), None)
        if keyed is None:
            return _auth_error(401, "unknown API key; ask the operator for a key of your tenant")
        request.state.tenant = keyed
        return await call_next(request)


def configure_app(app: FastAPI, s: Settings, sink: ExperienceSink | None, *, openai_base_url: str | None = None,
                  extras: dict[str, Any] | None = None) -> None:
    """Add auth, the feedback API and the console to a gateway app created by blacksoil.serving."""
    install_auth(app, s.platform.api_keys)
    store = sink.store if isinstance(sink, StoreSink) else None
    if store is not None:
        from blacksoil.experience.api import feedback_router

        app.include_router(feedback_router(lambda: store))
    from blacksoil.agents.api import RunDriver, agents_router
    from blacksoil.agents.launcher import RuntimeSetup

    agent_setup = RuntimeSetup.from_settings(s)
    app.state.agent_driver = RunDriver(agent_setup, s.agents.gateway_url or openai_base_url, sink)
    app.include_router(agents_router(agent_setup, app.state.agent_driver))
    if s.platform.console:
        from blacksoil.console.context import ConsoleContext
        from blacksoil.console.router import console_router
        from blacksoil.console.sampler import ServingSampler

        gateway = getattr(app.state, "gateway", None)
        sampler = ServingSampler(gateway.metrics.registry) if gateway is not None else None
        ctx = ConsoleContext(s, pool=getattr(app.state, "pool", None), sampler=sampler,
                             extras={"openai_base_url": openai_base_url, **(extras or {})})
        if store is not None:
            ctx.extras["experience_store"] = store
        ctx.extras["agent_driver"] = app.state.agent_driver  # approve/deny: the agents API's code path
        app.include_router(console_router(ctx))
        app.state.console = ctx
        if sampler is not None:
            sampler.start()


@contextlib.contextmanager
def running_platform(s: Settings | None = None, *, port: int = 0, sink: ExperienceSink | None = None,
                     **gateway_kwargs: Any) -> Iterator[Any]:
    """The gateway with every pillar's HTTP surface on 127.0.0.1; yields serving's GatewayHandle."""
    from blacksoil.serving.launch import gateway

    s = s or current_settings()
    own_sink = sink is None
    the_sink = sink if sink is not None else make_sink(s)

    def _configure(app: FastAPI, url: str) -> None:
        configure_app(app, s, the_sink, openai_base_url=url + "/v1")

    try:
        with gateway(s, port=port, sink=the_sink, configure=_configure, **gateway_kwargs) as gw:
            # A full collection walks every tracked object while holding the GIL, and this process holds torch,
            # transformers and every pillar's modules: measured 0.15-0.44 s pauses of the event loop, each one a gap
            # in every stream served then. What exists once the platform is up lives as long as it does: freeze it.
            gc.freeze()
            try:
                yield gw
            finally:
                console = getattr(gw.app.state, "console", None)
                if console is not None and console.sampler is not None:
                    console.sampler.stop()
    finally:
        if own_sink:
            the_sink.close()


def _log(line: str) -> None:
    """One line on stderr, where `blacksoil up` reports."""
    from rich.console import Console

    Console(stderr=True).print(line)


class BackgroundLearner:
    """The learner's thread and, when its training is scheduled, the control loop that places it."""

    def __init__(self, thread: threading.Thread, rounds: Any, control: Any = None) -> None:
        self.thread = thread
        self.rounds = rounds
        """learning.loop.RoundLoop: the Learner and the rounds' errors."""
        self.control = control
        """scheduling.backends.scheduled_learner.ControlLoop, or None when training runs in the learner's thread."""

    def join(self, timeout: float | None = None) -> None:
        """Wait for the learner's thread (its `stop` event must be set), then checkpoint the worker and stop the
        scheduler; serving keeps its replicas until the gateway itself shuts down."""
        self.thread.join(timeout=timeout)
        if self.control is not None:
            self.control.close()


def start_background_learner(gw: Any, s: Settings, stop: threading.Event, opts: Any = None,
                             scheduled: bool = True, on_round: Any = None) -> BackgroundLearner:
    """Learning rounds against the running gateway every platform.learner_interval_s, in a thread.

    The gateway's sink must be the experience store (see `blacksoil up`): the learner reads what it stored. With
    `scheduled` (and at least 2 cores) each round's training runs in a preemptible worker process that the unified
    policy places through the local backend, yielding its cores to another engine replica when serving demand rises;
    otherwise it runs in the learner's thread. `opts`: the rounds' sizes (learning.loop.LoopOptions; None = defaults);
    `on_round(learner)`: called after every finished round.
    """
    from blacksoil.learning.context import LearnerContext
    from blacksoil.learning.loop import RoundLoop

    if not isinstance(gw.sink, StoreSink):
        raise ConfigError(f"the learner reads the experience store, but platform.experience_sink is "
                          f"{s.platform.experience_sink!r}; set it to 'store' (the default)")
    if scheduled:
        runner, control = scheduled_training(gw, s, stop)
    else:
        _log("learner: training runs in the learner's thread, unscheduled: the engine replicas are not local "
             "processes (`--backend ray`), so no core can move between them and the learner")
        runner = control = None
    rounds = RoundLoop(gw, gw.sink.store, s.platform.learner_interval_s, stop, LearnerContext.from_settings(s), opts,
                       runner, on_round)
    thread = threading.Thread(target=rounds.run, daemon=True, name="learner")
    thread.start()
    return BackgroundLearner(thread, rounds, control)


def scheduled_training(gw: Any, s: Settings, stop: threading.Event) -> tuple[Any, Any]:
    """(TrainRunner, ControlLoop) placing the learner's training as a workload of the local backend next to the
    gateway's engine replicas, or (None, None) with a log line saying why training stays in the learner's thread.

    The control loop starts now and steps every scheduling.local_step_s: between rounds the learner holds no core
    and serving may grow onto every core. The console's scheduling view shows its steps live."""
    import os

    from blacksoil.scheduling.backends.gateway_demand import GatewayDemand
    from blacksoil.scheduling.backends.local import LocalBackend
    from blacksoil.scheduling.backends.platform_workloads import GatewayReplicas, LearnerWorkload
    from blacksoil.scheduling.backends.scheduled_learner import ControlLoop, ScheduledRunner, local_config

    cores = sorted(os.sched_getaffinity(0))
    why = (f"the scheduler needs 2 cores to split serving and training, this process has {len(cores)}"
           if len(cores) < 2 else
           "the gateway serves upstream URLs, so there are no local engine replicas to trade cores with"
           if gw.pool.model is None else None)
    if why is not None:
        _log(f"learner: training runs in the learner's thread, unscheduled: {why}")
        return None, None
    cfg = local_config(s.scheduling)
    workload = LearnerWorkload("learner", home=s.home)
    backend = LocalBackend(GatewayReplicas("gateway", gw.pool), [workload],
                           GatewayDemand(gw.url, admitted_per_replica=s.serving.admitted(),
                                         cores_per_replica=s.serving.engine_threads()),
                           cores=cores, cfg=cfg)
    console = getattr(gw.app.state, "console", None)
    if console is not None:
        console.extras["scheduler"] = backend  # the scheduling view reads its recent steps
    return ScheduledRunner(workload, stop, backend=backend), ControlLoop(backend, cfg.step_s).start()


def resolve_adapter(s: Settings, choice: str | None, model: str | None = None) -> AdapterVersion | None:
    """The adapter a starting gateway serves: `choice` 'base' = none, 'vN' = that published version, None = the
    latest promoted version of the model (what the learner last swapped in), so a restart keeps a promotion."""
    if choice == "base" or s.serving.upstreams:
        return None
    from blacksoil.learning.adapters import AdapterStore
    from blacksoil.serving.models import ModelRegistry

    name = ModelRegistry(s.home).resolve(model or s.serving.model).name
    store = AdapterStore(s.home, name)
    return store.promoted() if choice is None else store.get(choice)


def run_up(port: int, learner: bool | None, adapter: str | None = None, backend: str | None = None,
           address: str | None = None) -> None:
    """`blacksoil up`: the whole platform until SIGINT or SIGTERM, then a clean shutdown.

    The port is bound before the engine loads (a busy port is a ConfigError: exit 2). Both signals get explicit
    handlers: a shell that backgrounds a command starts it with SIGINT ignored, and SIGTERM's default action
    killed the process without stopping the engine, the learner or the store.
    """
    import signal

    from rich.console import Console

    from blacksoil.scheduling.backends.ray_platform import replica_backend

    s = current_settings()
    replicas_on = replica_backend(backend, address, s.scheduling)  # `--backend ray`: engines as Ray actors
    err = Console(stderr=True)
    stop = threading.Event()
    learn = s.platform.learner if learner is None else learner
    if learn and s.platform.experience_sink != "store":
        raise ConfigError(f"--learner reads the experience store, but platform.experience_sink is "
                          f"{s.platform.experience_sink!r}; set it to 'store' (the default) or drop --learner")
    sink = make_sink(s)

    def _stop(signum: int, _frame: object) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, _stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        served = resolve_adapter(s, adapter)
        on_ray = (backend or s.scheduling.backend) == "ray"  # no engine of its own: the actors are its replicas
        with running_platform(s, port=port, sink=sink, adapter=served, engines=not on_ray) as gw, \
                replicas_on(gw, s, served):
            err.print(f"blacksoil is up: API {gw.openai_base_url}  console {gw.url}/console  metrics {gw.url}/metrics")
            # `--backend ray` puts the engines on Ray actors, which the local scheduler cannot pin or trade cores with.
            worker = start_background_learner(gw, s, stop, scheduled=(backend or s.scheduling.backend) == "local") \
                if learn else None
            try:
                while not stop.wait(0.5):
                    pass
                err.print("stopping…")
            finally:
                stop.set()
                if worker is not None:
                    worker.join(timeout=60)
    finally:
        sink.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def serve_platform(overrides: dict[str, Any], adapter: str | None = None) -> None:
    """`blacksoil serve`: the gateway in the foreground with the platform's sink, auth, feedback API and console."""
    from blacksoil.serving.server import serve_forever

    s = current_settings()
    sink = make_sink(s)
    try:
        serve_forever(s, overrides, sink=sink, adapter=resolve_adapter(s, adapter, overrides.get("model")),
                      configure=lambda app, url: configure_app(app, s, sink, openai_base_url=url + "/v1"))
    finally:
        sink.close()
