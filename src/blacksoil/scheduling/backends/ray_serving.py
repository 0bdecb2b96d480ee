"""Serving replicas as Ray actors: the embedded llama.cpp server runs inside the actor, on its node's cores.

Each actor loads the model through xllamacpp in its own process, listens on its node's address with a fresh API
key, and reports its OpenAI base URL. `RayReplicas` registers each one with the gateway's pool as it comes up and
removes it as it stops, or as soon as Ray reports the actor dead (a killed actor or a lost node): the pending
`until_stopped` call of a dead actor fails, which is Ray's own death notice, so no polling of engines is needed.
"""

from __future__ import annotations

import logging
import secrets
import threading
from dataclasses import dataclass
from typing import Any

from blacksoil.errors import InternalError
from blacksoil.serving.pool import ReplicaPool

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EngineSpec:
    """What every replica actor serves (picklable: it travels to the actor)."""

    model_path: str | None = None
    """GGUF path as the nodes see it (None = the default model shipped in each node's install)."""
    slots: int = 4
    """Parallel sequences of one engine (count)."""
    ctx: int = 4096
    """Context of the whole engine, split over its slots (tokens)."""
    threads: int = 0
    """Decode threads (0 = every CPU the node offers Ray: each node's cores are its replica's own)."""
    lora_path: str | None = None
    """GGUF LoRA adapter to apply (None = the base model)."""


class ServingReplica:
    """A Ray actor: llama.cpp's HTTP server (xllamacpp) in this process, reachable at `endpoint()['api_base']`."""

    def __init__(self, spec: EngineSpec) -> None:
        import ray
        import xllamacpp as x

        from blacksoil.serving.models import default_model_path
        from blacksoil.serving.worker import build_params

        ctx = ray.get_runtime_context()
        self.node_id = str(ctx.get_node_id())
        self.threads = spec.threads or _node_cpus(self.node_id)
        self.api_key = secrets.token_urlsafe(32)
        params = build_params({"model_path": spec.model_path or str(default_model_path()), "slots": spec.slots,
                               "ctx": spec.ctx, "threads": self.threads, "lora_path": spec.lora_path})
        # Other nodes' gateways must reach it: listen on this node's address, with a key only the gateway gets.
        params.hostnames = [ray.util.get_node_ip_address()]
        params.api_keys = [self.api_key]
        self.server = x.Server(params)
        self.api_base = f"{self.server.listening_address}/v1"
        self.slots = spec.slots
        self._stopped = threading.Event()

    def endpoint(self) -> dict[str, Any]:
        """Where and how to reach the engine (the key travels over Ray, never in a URL or argv)."""
        return {"api_base": self.api_base, "api_key": self.api_key, "node": self.node_id, "threads": self.threads,
                "slots": self.slots}

    def until_stopped(self) -> str:
        """Returns only when stop() is called; fails when the actor dies (Ray's death notice for the owner)."""
        self._stopped.wait()
        return self.node_id

    def stop(self) -> None:
        self._stopped.set()


def _node_cpus(node_id: str) -> int:
    import ray

    for n in ray.nodes():
        if n["NodeID"] == node_id:
            return max(1, int(n["Resources"].get("CPU", 1)))
    return 1


@dataclass
class _Member:
    actor: Any
    done: Any
    node: str


class RayReplicas:
    """Replica actors registered with one gateway pool: start, stop, and drop the dead ones."""

    def __init__(self, pool: ReplicaPool, spec: EngineSpec | None = None, start_timeout_s: float = 120.0) -> None:
        import ray

        self.ray = ray
        self.pool = pool
        self.spec = spec or EngineSpec(slots=pool.config.slots, ctx=pool.config.ctx, threads=pool.config.threads,
                                       model_path=str(pool.model.path) if pool.model else None)
        self.start_timeout_s = start_timeout_s
        self.members: dict[str, _Member] = {}
        self.lost: list[str] = []
        """Replicas whose actor died (killed, or its node lost), in order."""
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self._watcher = threading.Thread(target=self._watch, daemon=True, name="ray-replica-watch")
        self._watcher.start()

    def start(self, options: dict[str, Any]) -> str:
        """Start one replica actor with Ray `options` (resources, scheduling strategy); register it; its name."""
        actor: Any = self.ray.remote(ServingReplica).options(max_concurrency=4, **options).remote(self.spec)
        try:
            ep: dict[str, Any] = self.ray.get(actor.endpoint.remote(), timeout=self.start_timeout_s)
        except Exception as e:
            self.ray.kill(actor)
            raise InternalError(f"a serving replica actor did not start within {self.start_timeout_s:.0f} s "
                                f"({type(e).__name__}: {e}); check the model path on the Ray nodes") from None
        replica = self.pool.add_remote(ep["api_base"], ep["api_key"], slots=int(ep["slots"]))
        with self._lock:
            self.members[replica.name] = _Member(actor, actor.until_stopped.remote(), str(ep["node"]))
        log.info("replica %s on Ray node %s at %s", replica.name, ep["node"], ep["api_base"])
        return replica.name

    def stop(self, name: str) -> None:
        """Drain `name` in the gateway, then end its actor."""
        with self._lock:
            m = self.members.pop(name, None)
        if m is None:
            return
        self.pool.remove_replica(name, drain=True)
        self.ray.kill(m.actor)

    def node_of(self, name: str) -> str:
        return self.members[name].node

    def actor_of(self, name: str) -> Any:
        return self.members[name].actor

    def _watch(self) -> None:
        while not self._closed.is_set():
            with self._lock:
                by_ref = {m.done: name for name, m in self.members.items()}
            if not by_ref:
                self._closed.wait(0.2)
                continue
            ready, _ = self.ray.wait(list(by_ref), num_returns=1, timeout=0.2)
            for ref in ready:
                name = by_ref[ref]
                with self._lock:
                    if self.members.pop(name, None) is None:  # stopped on purpose meanwhile
                        continue
                log.warning("replica %s: its Ray actor is gone; removing it from the gateway", name)
                self.pool.remove_replica(name, drain=False)
                self.lost.append(name)

    def close(self) -> None:
        """Stop every replica actor (their gateway entries go first)."""
        self._closed.set()
        self._watcher.join(timeout=5)
        for name in list(self.members):
            with self._lock:
                m = self.members.pop(name)
            self.pool.remove_replica(name, drain=False)
            self.ray.kill(m.actor)
