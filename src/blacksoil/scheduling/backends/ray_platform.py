"""`blacksoil up --backend ray`: the gateway, store and console stay where the command runs; the engine replicas
are Ray actors on the cluster's nodes, each running the embedded engine on its node's cores.

The gateway starts as usual (its own engine answers /health while the actors load), then hands its traffic over:
the actors join its pool and its own engine stops. Replicas that die leave the pool at once (ray_serving.py).
"""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from typing import Any

from blacksoil.errors import ConfigError
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
    try:
        ray.init(address=check_address(address), log_to_driver=False)
    except (ConnectionError, RuntimeError) as e:
        raise ConfigError(f"no Ray cluster answers at {address!r} ({str(e).splitlines()[0]}); start one with "
                          "`ray start --head` or pass --address HOST:PORT") from None
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


def replica_backend(backend: str | None, address: str | None,
                    scheduling: SchedulingConfig) -> Callable[[ReplicaPool, int], AbstractContextManager[Any]]:
    """Where `blacksoil up` runs its engine replicas: `(pool, replicas) -> context manager`.

    `backend`/`address` override `scheduling.backend`/`scheduling.ray_address`. Bad values fail here, before the
    gateway or any engine starts.
    """
    chosen = backend or scheduling.backend
    if chosen == "local":
        return lambda pool, replicas: contextlib.nullcontext()
    if chosen == "kubernetes":
        raise ConfigError("`blacksoil up` runs its engines locally or on Ray; on Kubernetes the operator runs them "
                          "(see deploy/kubernetes/); pass --backend local or --backend ray")
    if chosen != "ray":
        raise ConfigError(f"--backend {chosen!r} is unknown; use local or ray")
    where = check_address(address or scheduling.ray_address)
    _ray()
    return lambda pool, replicas: ray_replicas(pool, where, replicas)
