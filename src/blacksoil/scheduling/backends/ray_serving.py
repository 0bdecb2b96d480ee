"""Serving replicas as Ray actors: the embedded llama.cpp server runs inside the actor, on its node's cores.

Each actor loads the model through xllamacpp in its own process, listens on its node's address with a fresh API
key, and reports its OpenAI base URL. `RayReplicas` registers each one with the gateway's pool as it comes up and
ends its actor when the pool stops it (a scale-down, a hot swap retiring it, shutdown), or drops it as soon as Ray
reports the actor dead (a killed actor or a lost node): the pending `until_stopped` call of a dead actor fails,
which is Ray's own death notice, so no polling of engines is needed.

`RayReplicas` is also the pool's replica starter (`pool.starter`): the learner's HotSwapper calls
`pool.start_replica(adapter)` as it does on one machine, and the green replica is an actor serving that adapter's
GGUF LoRA, read from a folder every node sees (`adapter_dir`; None = the adapter store's own path, for one machine
or a home on shared storage).

An actor that Ray gave a GPU runs vLLM instead (ray_vllm.py), registered the same way.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import shutil
import threading
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from blacksoil.contracts import AdapterVersion
from blacksoil.errors import ConfigError, InternalError, NotFoundError, RetryableError
from blacksoil.scheduling.backends.ray_vllm import EngineKind, RemoteVllmEngine, engine_for
from blacksoil.serving.config import ServingConfig
from blacksoil.serving.pool import Replica, ReplicaPool

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
    """GGUF LoRA adapter to apply, as the node sees it (None = the base model)."""
    lora_scale: float = 1.0
    """Scale of that adapter."""
    served_name: str = ""
    """Model name the gateway serves (vLLM replicas answer to it)."""
    config: ServingConfig | None = None
    """The gateway's serving settings (vLLM replicas read serving.vllm; None = defaults)."""
    home: str | None = None
    """blacksoil home on the nodes, for vLLM's HF checkpoint and log (None = each node's own setting)."""


class ServingReplica:
    """A Ray actor: llama.cpp's HTTP server (xllamacpp) in this process, or vLLM's as its child process when Ray
    gave it a GPU, reachable at `endpoint()['api_base']`.

    A start that fails (a model or adapter path this node does not have, no vLLM environment) is reported by
    `endpoint()`, so the gateway's side can name the cause instead of Ray's traceback."""

    def __init__(self, spec: EngineSpec) -> None:
        import ray

        ctx = ray.get_runtime_context()
        self.node_id = str(ctx.get_node_id())
        self.engine: EngineKind = engine_for(ray.get_gpu_ids())
        self.slots = spec.slots
        self.threads = spec.threads or _node_cpus(self.node_id)
        self.api_key = secrets.token_urlsafe(32)
        self._stopped = threading.Event()
        self.error: str | None = None
        self.api_base = ""
        self.vllm: Any = None
        try:
            if self.engine == "vllm":
                self._start_vllm(spec)
            else:
                self._start(spec)
        except Exception as e:  # reported by endpoint(): the owner turns it into a ConfigError naming the node
            self.error = f"{type(e).__name__}: {getattr(e, 'message', e)}"

    def _start_vllm(self, spec: EngineSpec) -> None:
        import ray

        from blacksoil.config import settings
        from blacksoil.scheduling.backends.ray_vllm import start_vllm

        home = Path(spec.home) if spec.home else settings().home
        self.vllm = start_vllm(spec.model_path, spec.served_name, spec.config or ServingConfig(), home)
        port = self.vllm.root_url.rsplit(":", 1)[1]
        self.api_base, self.api_key = f"http://{ray.util.get_node_ip_address()}:{port}/v1", self.vllm.api_key

    def _start(self, spec: EngineSpec) -> None:
        import ray
        import xllamacpp as x

        from blacksoil.serving.models import default_model_path
        from blacksoil.serving.worker import build_params

        for what, path in (("model", spec.model_path), ("adapter", spec.lora_path)):
            if path is not None and not os.path.isfile(path):
                raise FileNotFoundError(f"the {what} file {path} is not on this node; put models and adapters at "
                                        "a path every node sees (scheduling.ray_shared_dir for adapters)")
        params = build_params({"model_path": spec.model_path or str(default_model_path()), "slots": spec.slots,
                               "ctx": spec.ctx, "threads": self.threads, "lora_path": spec.lora_path,
                               "lora_scale": spec.lora_scale,
                               "prefill_chunk": (spec.config or ServingConfig()).prefill_chunk})
        # Other nodes' gateways must reach it: listen on this node's address, with a key only the gateway gets.
        params.hostnames = [ray.util.get_node_ip_address()]
        params.api_keys = [self.api_key]
        self.server = x.Server(params)
        self.api_base = f"{self.server.listening_address}/v1"

    def endpoint(self) -> dict[str, Any]:
        """Where and how to reach the engine (the key travels over Ray, never in a URL or argv)."""
        return {"api_base": self.api_base, "api_key": self.api_key, "node": self.node_id, "threads": self.threads,
                "slots": self.slots, "error": self.error, "engine": self.engine}

    def until_stopped(self) -> str:
        """Returns only when stop() is called; fails when the actor dies (Ray's death notice for the owner)."""
        self._stopped.wait()
        return self.node_id

    def stop(self) -> None:
        self._stopped.set()

    def shutdown(self) -> None:
        """Stop vLLM and its engine core before the actor is killed (llama.cpp ends with the process)."""
        if self.vllm is not None:
            self.vllm.stop()


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
    engine: str = "llamacpp"


class RayReplicas:
    """Replica actors registered with one gateway pool: start, stop, and drop the dead ones.

    `adapter`: what replicas serve before any serves (the gateway's start-up adapter); afterwards a new replica
    serves what the replicas taking new sessions serve, so a promotion survives a scale-up. `options`: the Ray
    options of a replica the pool asks for (a hot swap's green) when no backend chose a node."""

    def __init__(self, pool: ReplicaPool, spec: EngineSpec | None = None, start_timeout_s: float = 120.0, *,
                 adapter: AdapterVersion | None = None, adapter_dir: Path | None = None,
                 options: dict[str, Any] | None = None) -> None:
        import ray

        self.ray = ray
        self.pool = pool
        self.spec = spec or EngineSpec(slots=pool.config.slots, ctx=pool.config.ctx, threads=pool.config.threads,
                                       model_path=str(pool.model.path) if pool.model else None)
        self.start_timeout_s = start_timeout_s
        self.adapter = adapter
        self.adapter_dir = adapter_dir
        self.options = options or {"num_cpus": max(1, self.spec.threads), "scheduling_strategy": "SPREAD"}
        self.members: dict[str, _Member] = {}
        self.lost: list[str] = []
        """Replicas whose actor died (killed, or its node lost), in order."""
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self._watcher = threading.Thread(target=self._watch, daemon=True, name="ray-replica-watch")
        self._watcher.start()

    def __call__(self, adapter: AdapterVersion | None, *, accept_new_sessions: bool) -> Replica:
        """The pool's starter (`pool.starter = replicas`): one actor serving `adapter` wherever `options` allow."""
        free = self.ray.available_resources()
        for option, resource in (("num_cpus", "CPU"), ("num_gpus", "GPU")):
            need, have = float(self.options.get(option, 0)), float(free.get(resource, 0.0))
            if have < need:
                raise RetryableError(f"no Ray node has {need:g} free {resource}s for another serving replica ({have:g} "
                                     "free in the cluster); add a worker node or scale serving down first")
        return self._start(self.options, adapter, accept_new_sessions)

    def start(self, options: dict[str, Any], adapter: AdapterVersion | None = None,
              accept_new_sessions: bool = True) -> str:
        """Start one replica actor with Ray `options` (resources, scheduling strategy) serving `adapter`; register
        it; its name."""
        return self._start(options, adapter, accept_new_sessions).name

    def _start(self, options: dict[str, Any], adapter: AdapterVersion | None, accept_new_sessions: bool) -> Replica:
        spec = replace(self.spec, lora_path=self.lora_path(adapter), lora_scale=adapter.scale if adapter else 1.0,
                       served_name=self.pool.served_name, config=self.spec.config or self.pool.config)
        actor: Any = self.ray.remote(ServingReplica).options(max_concurrency=4, **options).remote(spec)
        try:
            ep: dict[str, Any] = self.ray.get(actor.endpoint.remote(), timeout=self.start_timeout_s)
        except Exception as e:
            self.ray.kill(actor)
            raise InternalError(f"a serving replica actor did not start within {self.start_timeout_s:.0f} s "
                                f"({type(e).__name__}: {e}); is there a node with room for {options}?") from None
        if ep["error"]:
            self.ray.kill(actor)
            raise ConfigError(f"the {ep['engine']} serving replica on Ray node {ep['node']} could not start: "
                              f"{ep['error']}")
        try:
            if ep["engine"] == "vllm":
                engine = RemoteVllmEngine(ep["api_base"], ep["api_key"], self.pool.served_name, self.pool.config,
                                          adapter=self.peft_adapter(adapter), on_stop=lambda: self._ended(actor))
                replica = self.pool.add_engine(engine, slots=int(ep["slots"]),
                                               accept_new_sessions=accept_new_sessions)
            else:
                replica = self.pool.add_remote(ep["api_base"], ep["api_key"], slots=int(ep["slots"]),
                                               adapter=adapter, accept_new_sessions=accept_new_sessions,
                                               on_stop=lambda: self._ended(actor))
        except BaseException:
            self.ray.kill(actor)
            raise
        with self._lock:
            self.members[replica.name] = _Member(actor, actor.until_stopped.remote(), str(ep["node"]), ep["engine"])
        log.info("replica %s (%s) on Ray node %s at %s", replica.name, replica.adapter_version, ep["node"],
                 ep["api_base"])
        return replica

    def lora_path(self, adapter: AdapterVersion | None) -> str | None:
        """Where the nodes read `adapter`'s GGUF: copied once into `adapter_dir`, or its own path without one."""
        if adapter is None:
            return None
        if adapter.gguf_path is None:
            raise ConfigError(f"adapter {adapter.version!r} has no gguf_path; llama.cpp replicas need a GGUF LoRA")
        if self.adapter_dir is None:
            return str(adapter.gguf_path)
        dst = self.adapter_dir / adapter.base_model / f"{adapter.version}.gguf"
        if not dst.exists():  # versions are immutable: a file there is this version
            dst.parent.mkdir(parents=True, exist_ok=True)
            tmp = dst.with_suffix(f".{os.getpid()}.tmp")
            shutil.copyfile(adapter.gguf_path, tmp)
            tmp.replace(dst)  # atomic: a node never reads half a file
        return str(dst)

    def peft_adapter(self, adapter: AdapterVersion | None) -> AdapterVersion | None:
        """`adapter` with its peft folder where the nodes read it (vLLM loads that folder at runtime)."""
        if adapter is None or adapter.safetensors_dir is None or self.adapter_dir is None:
            return adapter
        dst = self.adapter_dir / adapter.base_model / f"{adapter.version}-peft"
        if not dst.exists():
            tmp = dst.with_name(f"{dst.name}.{os.getpid()}.tmp")
            shutil.copytree(adapter.safetensors_dir, tmp, dirs_exist_ok=True)
            tmp.replace(dst)
        return replace(adapter, safetensors_dir=dst)

    def served_adapter(self) -> AdapterVersion | None:
        """What a new replica serves: the adapter of the ready replicas taking new sessions, else `adapter`."""
        for i in self.pool.info():
            r = self.pool.replicas.get(i.name)
            if r is not None and i.status == "ready" and i.accepting_new_sessions:
                served: AdapterVersion | None = r.engine.adapter
                return served
        return self.adapter

    def stop(self, name: str) -> None:
        """Drain `name` in the gateway, then end its actor (the pool's stop calls `_ended`)."""
        try:
            self.pool.remove_replica(name, drain=True)
        except NotFoundError:  # the pool stopped it meanwhile (a hot swap): its actor ended with it
            self._ended_name(name)

    def _ended(self, actor: Any) -> None:
        """The pool stopped the replica `actor` serves: forget it and end the actor."""
        with self._lock:
            name = next((n for n, m in self.members.items() if m.actor is actor), None)
            m = self.members.pop(name) if name is not None else None
        self._end(actor, m is not None and m.engine == "vllm")

    def _end(self, actor: Any, graceful: bool) -> None:
        with contextlib.suppress(Exception):  # already dead, or Ray shut down first
            if graceful:  # vLLM stops its engine core first (its process would otherwise hold the GPU a while)
                self.ray.get(actor.shutdown.remote(), timeout=30)
        with contextlib.suppress(Exception):
            self.ray.kill(actor)

    def _ended_name(self, name: str) -> None:
        with self._lock:
            m = self.members.pop(name, None)
        if m is not None:
            self._end(m.actor, m.engine == "vllm")

    def nodes(self) -> dict[str, str]:
        """Replica name → Ray node id of every live replica actor."""
        with self._lock:
            return {name: m.node for name, m in self.members.items()}

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
                with contextlib.suppress(NotFoundError):
                    self.pool.remove_replica(name, drain=False)
                self.lost.append(name)

    def close(self) -> None:
        """Stop every replica actor (their gateway entries go first)."""
        self._closed.set()
        self._watcher.join(timeout=5)
        for name in list(self.members):
            with contextlib.suppress(NotFoundError):
                self.pool.remove_replica(name, drain=False)
            self._ended_name(name)
