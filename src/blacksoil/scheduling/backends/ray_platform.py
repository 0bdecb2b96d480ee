"""`blacksoil up --backend ray`: the gateway, store and console stay where the command runs; the engine replicas
are Ray actors on the cluster's nodes, each running the embedded engine on its node's cores.

The gateway starts with no engine of its own (/health says 503 until the first actor serves). The unified policy
then decides how many replica actors run, from the gateway's live demand (its /metrics, as under the local
backend): the RayBackend places each on a node with room, a demand spike adds one, falling demand drains and
stops one, and a replica whose actor or node is lost is replaced where there is room. The pool's replica starter
is the same actors, so the learner's hot swap starts its green replica as an actor too (ray_serving.py).

A cluster whose nodes offer `GPU` serves from them, one vLLM replica per GPU (ray_vllm.py); a CPU cluster serves
llama.cpp replicas of serving.threads CPUs each.
"""

from __future__ import annotations

import contextlib
import logging
import re
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

from blacksoil.config import Settings
from blacksoil.contracts import AdapterVersion
from blacksoil.errors import ConfigError
from blacksoil.scheduling.backends.ray_backend import RayBackend
from blacksoil.scheduling.backends.ray_serving import EngineSpec, RayReplicas
from blacksoil.scheduling.config import SchedulingConfig
from blacksoil.serving.pool import ReplicaPool

log = logging.getLogger(__name__)

_ADDRESS = re.compile(r"^(auto|ray://[\w.\-]+:\d{1,5}|[\w.\-]+:\d{1,5})$")


def check_address(address: str) -> str:
    """`address` when it names a Ray cluster the way `ray.init` takes it; ConfigError naming the fix otherwise."""
    if not _ADDRESS.match(address):
        raise ConfigError(f"--address {address!r} is not a Ray cluster address; pass `auto` (the cluster this machine "
                          "joined with `ray start`) or HOST:PORT of the head node (e.g. 10.0.0.5:6379)")
    return address


def _ray() -> Any:
    try:
        import ray
    except ImportError:
        raise ConfigError("the Ray backend needs the `ray` package; install it with `pip install 'ray[default]'`") \
            from None
    return ray


@contextlib.contextmanager
def connected(address: str) -> Iterator[Any]:
    """This process as a Ray driver of the cluster at `address` (an existing connection is reused and kept)."""
    ray = _ray()
    if ray.is_initialized():
        yield ray
        return
    main = threading.current_thread() is threading.main_thread()
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)} if main else {}
    try:
        ray.init(address=check_address(address), log_to_driver=False)
    except (ConnectionError, RuntimeError) as e:
        raise ConfigError(f"no Ray cluster answers at {address!r} ({str(e).splitlines()[0]}); start one with "
                          "`ray start --head` or pass --address HOST:PORT") from None
    for sig, handler in handlers.items():  # Ray installs its own fatal SIGTERM handler: `up` must stop cleanly
        if handler is not None:
            signal.signal(sig, handler)
    try:
        yield ray
    finally:
        ray.shutdown()


@contextlib.contextmanager
def ray_replicas(pool: ReplicaPool, address: str, replicas: int, spec: EngineSpec | None = None,
                 resources: dict[str, float] | None = None) -> Iterator[RayReplicas]:
    """`replicas` engine actors spread over the cluster's nodes (1 CPU each reserved, the node's cores as threads),
    registered with `pool`; the pool's own engines stop once they serve. Everything stops on exit."""
    with connected(address) as ray:
        if not any(n["Alive"] and n["Resources"].get("CPU", 0) >= 1 for n in ray.nodes()):
            raise ConfigError(f"the Ray cluster at {address!r} has no node with a free CPU for an engine replica; "
                              "add a worker node (`ray start --address HEAD:PORT --num-cpus N`)")
        members = RayReplicas(pool, spec)
        try:
            local = [i.name for i in pool.info()]
            for _ in range(replicas):
                members.start({"num_cpus": 1, "resources": dict(resources or {}), "scheduling_strategy": "SPREAD"})
            for name in local:
                pool.stop_replica(name)
            log.info("serving from %d Ray replica actors", replicas)
            yield members
        finally:
            members.close()


def _engine_spec(s: Settings, pool: ReplicaPool, ray: Any) -> EngineSpec:
    """One replica's engine: serving.threads CPUs (0 = as many as the smallest worker node offers, so a replica
    fills a node), the gateway's model (None = each node's installed default when the gateway serves that one)."""
    from blacksoil.serving.models import default_model_path

    model = pool.model.path if pool.model is not None else None
    default = model is not None and Path(model).resolve() == Path(default_model_path()).resolve()
    model_path = None if model is None or default else str(model)
    if _gpu_nodes(ray):  # vLLM replicas, one GPU each; threads do not apply
        return EngineSpec(model_path=model_path, slots=s.serving.slots, ctx=s.serving.ctx, threads=1)
    cpus = [int(n["Resources"].get("CPU", 0)) for n in ray.nodes() if n["Alive"] and n["Resources"].get("CPU", 0) >= 1]
    if not cpus:
        raise ConfigError("the Ray cluster has no node with a CPU for an engine replica; add a worker node "
                          "(`ray start --address HEAD:PORT --num-cpus N`)")
    threads = s.serving.threads or min(cpus)
    if threads > max(cpus):
        raise ConfigError(f"serving.threads is {threads}, but the largest Ray node offers {max(cpus)} CPUs; lower "
                          "serving.threads or add bigger nodes")
    return EngineSpec(model_path=model_path, slots=s.serving.slots, ctx=s.serving.ctx, threads=threads)


def _gpu_nodes(ray: Any) -> int:
    return sum(1 for n in ray.nodes() if n["Alive"] and n["Resources"].get("GPU", 0) >= 1)


@contextlib.contextmanager
def policy_replicas(gw: Any, s: Settings, address: str, adapter: AdapterVersion | None = None,
                    cfg: SchedulingConfig | None = None) -> Iterator[RayBackend]:
    """Engine replica actors for the running gateway `gw` (launch.GatewayHandle), as many as the unified policy
    wants from the gateway's demand, stepped every `cfg.step_s` (None = scheduling.local_step_s, no modelled
    delays); serving `adapter` until a swap promotes another. The pool's own engines, if it started any, stop
    once the first actor serves. Everything stops on exit."""
    from blacksoil.scheduling.backends.gateway_demand import GatewayDemand
    from blacksoil.scheduling.backends.scheduled_learner import ControlLoop, local_config

    pool: ReplicaPool = gw.pool
    cfg = cfg or local_config(s.scheduling)
    with connected(address) as ray:
        spec = _engine_spec(s, pool, ray)
        accel, units = ("GPU", 1) if _gpu_nodes(ray) else ("CPU", spec.threads)
        shared = Path(s.scheduling.ray_shared_dir) / "adapters" if s.scheduling.ray_shared_dir else None
        members = RayReplicas(pool, spec, adapter=adapter, adapter_dir=shared, options={
            "num_cpus": 0 if accel == "GPU" else units, "num_gpus": units if accel == "GPU" else 0,
            "scheduling_strategy": "SPREAD"})
        demand = GatewayDemand(gw.url, admitted_per_replica=s.serving.admitted(), cores_per_replica=units)
        try:
            backend = RayBackend([], demand, s.home / "ray", pool, {}, accelerator=accel, cfg=cfg, serving=members,
                                 min_replicas=1, replica_units=units)
        except BaseException:
            members.close()
            raise
        local = [i.name for i in pool.info()]
        pool.starter = members  # a hot swap's green replica is an actor too
        control = None
        try:
            backend.step()  # the first replica (the policy's minimum), before the loop takes over
            for name in local:
                pool.stop_replica(name)
            control = ControlLoop(backend, cfg.step_s).start()
            log.info("serving from Ray replica actors, scaled by the unified policy every %.1f s", cfg.step_s)
            yield backend
        finally:
            pool.starter = None
            if control is not None:
                control.close(keep_serving=False)
            else:
                backend.close()


ReplicaBackend = Callable[[Any, Settings, AdapterVersion | None], AbstractContextManager[Any]]
"""`(gateway handle, settings, served adapter) -> context manager` running the gateway's engine replicas."""


def replica_backend(backend: str | None, address: str | None, scheduling: SchedulingConfig) -> ReplicaBackend:
    """Where `blacksoil up` runs its engine replicas (see ReplicaBackend): the gateway's own engines (local), or
    Ray actors the unified policy scales (ray).

    `backend`/`address` override `scheduling.backend`/`scheduling.ray_address`. Bad values fail here, before the
    gateway or any engine starts.
    """
    chosen = backend or scheduling.backend
    if chosen == "local":
        return lambda gw, s, adapter: contextlib.nullcontext()
    if chosen == "kubernetes":
        raise ConfigError("`blacksoil up` runs its engines locally or on Ray; on Kubernetes the operator runs them "
                          "(see deploy/kubernetes/); pass --backend local or --backend ray")
    if chosen != "ray":
        raise ConfigError(f"--backend {chosen!r} is unknown; use local or ray")
    where = check_address(address or scheduling.ray_address)
    _ray()
    return lambda gw, s, adapter: policy_replicas(gw, s, where, adapter)
