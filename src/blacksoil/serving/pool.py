"""The replica pool: engines behind the gateway, their admission queue, restarts and blue/green swaps.

The learner's hot swap calls start_replica(adapter) → route_new_sessions_to → drain → stop_replica. Where a
replica runs is pluggable: by default start_replica starts an embedded engine process here; a backend that runs
engines elsewhere (Ray actors) sets `pool.starter`, so the swap code stays the same.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, Protocol

from blacksoil.contracts import AdapterVersion
from blacksoil.errors import ConfigError, NotFoundError, Overloaded, RetryableError
from blacksoil.serving.admission import Admission, Ticket
from blacksoil.serving.config import ServingConfig
from blacksoil.serving.engine import Engine, LlamaCppEngine
from blacksoil.serving.models import ModelEntry

log = logging.getLogger(__name__)
ReplicaStatus = Literal["starting", "ready", "draining", "restarting", "stopped"]


@dataclass
class Replica:
    """One engine instance and where it stands."""

    name: str
    engine: Engine
    status: ReplicaStatus = "starting"

    @property
    def adapter_version(self) -> str:
        """Label of the adapter it serves ('base' = none)."""
        return self.engine.adapter.version if self.engine.adapter else "base"


@dataclass(frozen=True)
class ReplicaInfo:
    """A snapshot of one replica for /health, /v1/models and the swap code."""

    name: str
    status: ReplicaStatus
    adapter_version: str
    accepting_new_sessions: bool
    inflight: int
    kind: str
    url: str


class ReplicaStarter(Protocol):
    """Starts one replica serving `adapter` somewhere else and registers it with the pool (pool.add_remote)."""

    def __call__(self, adapter: AdapterVersion | None, *, accept_new_sessions: bool) -> Replica:
        """The registered replica, once it answers."""
        ...


class ReplicaPool:
    """Engines, the scheduler in front of them, and the operations a hot swap needs.

    A blue/green swap to a new adapter, from any thread (the calls block; none cuts a request)::

        green = pool.start_replica(adapter, accept_new_sessions=False)  # loads, waits until it answers
        pool.route_new_sessions_to(green.name)     # new sessions (and returning ones) now go to green
        for blue in [i.name for i in pool.info() if i.name != green.name]:
            pool.drain(blue)                        # in-flight requests and streams finish
            pool.stop_replica(blue)
        assert {i.adapter_version for i in pool.info()} == {adapter.version}

    Rollback is the same sequence with the previous AdapterVersion (or None for the base model).
    """

    def __init__(self, config: ServingConfig, model: ModelEntry | None, served_name: str) -> None:
        self.config = config
        self.model = model
        self.served_name = served_name
        self.admission = Admission(config.policy, config.queue_max,  # type: ignore[arg-type]
                                   config.prefix_load_factor)
        self.replicas: dict[str, Replica] = {}
        self._lock = threading.RLock()
        self._waiters: dict[str, tuple[asyncio.AbstractEventLoop, asyncio.Future[Ticket]]] = {}
        self._names = itertools.count()
        self._checking: set[str] = set()
        self._closed = threading.Event()
        self._prober: threading.Thread | None = None
        self.starter: ReplicaStarter | None = None
        """Where start_replica starts engines (None = embedded engine processes on this machine)."""

    # -- replica lifecycle (blocking; call from a thread, not the event loop) --
    def start_replica(self, adapter: AdapterVersion | None = None, *, accept_new_sessions: bool = True,
                      cores: tuple[int, ...] = ()) -> Replica:
        """Start an engine (optionally with a LoRA adapter) and wait until it answers: an embedded engine process
        here on `cores`, or wherever `starter` puts it (`cores` then does not apply)."""
        if self.model is None:
            raise ConfigError("this pool serves upstream URLs only; it cannot start an embedded replica")
        if adapter is not None and adapter.base_model != self.model.name:
            raise ConfigError(
                f"adapter {adapter.version!r} is for base model {adapter.base_model!r}, "
                f"but this pool serves {self.model.name!r}; publish it for the served model"
            )
        if self.starter is not None:
            return self.starter(adapter, accept_new_sessions=accept_new_sessions)
        c = self.config
        engine = LlamaCppEngine(self.model.path, slots=c.slots, ctx=c.ctx, threads=c.engine_threads(),
                                prefill_chunk=c.prefill_chunk, adapter=adapter,
                                cores=cores, start_timeout_s=c.engine_start_timeout_s, timeout_s=c.request_timeout_s)
        return self._add(engine, c.admitted(), c.slots, accept_new_sessions)

    def add_upstream(self, api_base: str, *, accept_new_sessions: bool = True) -> Replica:
        """Put a running OpenAI-compatible server (vLLM, SGLang, llama-server) behind the gateway."""
        engine = Engine(api_base, timeout_s=self.config.request_timeout_s)
        engine.api_key = self.config.upstream_api_key
        return self._add(engine, self.config.slots, self.config.slots, accept_new_sessions)

    def add_remote(self, api_base: str, api_key: str, *, slots: int | None = None,
                   adapter: AdapterVersion | None = None, accept_new_sessions: bool = True,
                   on_stop: Callable[[], None] | None = None) -> Replica:
        """Register an embedded llama.cpp server that its owner started elsewhere (a Ray actor on another node).

        It gets the embedded engine's treatment (slot affinity, stream cancellation, health probes) except restarts:
        its owner replaces it and calls remove_replica. Blocks until it answers; returns the replica (its name).
        `on_stop`: called once when the pool stops it (a swap retiring it, a scale-down, shutdown), so its owner
        ends what runs it.
        """
        from blacksoil.serving.remote import RemoteLlamaCppEngine

        if adapter is not None and self.model is not None and adapter.base_model != self.model.name:
            raise ConfigError(f"adapter {adapter.version!r} is for base model {adapter.base_model!r}, "
                              f"but this pool serves {self.model.name!r}")
        engine = RemoteLlamaCppEngine(api_base, api_key=api_key, adapter=adapter,
                                      timeout_s=self.config.request_timeout_s, on_stop=on_stop)
        n = slots or self.config.slots
        return self._add(engine, min(self.config.admitted(), n), n, accept_new_sessions)

    def add_engine(self, engine: Engine, *, slots: int, accept_new_sessions: bool = True) -> Replica:
        """Register an engine built elsewhere (a vLLM that a Ray actor runs); `engine.start()` must block until it
        answers. It takes `slots` requests at once (at most what one replica admits)."""
        return self._add(engine, min(self.config.admitted(), slots), slots, accept_new_sessions)

    def remove_replica(self, name: str, *, drain: bool = True) -> None:
        """Take `name` out of the pool: drained and stopped, or at once when its engine is already dead
        (`drain=False`: its in-flight requests fail with 503s, nothing new goes to it)."""
        if drain:
            self.stop_replica(name)
            return
        with self._lock:
            r = self._get(name)
            self.admission.remove_replica(name)
            del self.replicas[name]
            r.status = "stopped"
            self._pump()
        r.engine.kill()
        r.engine.stop()

    def _add(self, engine: Engine, concurrency: int, slots: int, accepting: bool) -> Replica:
        name = f"r{next(self._names)}"
        replica = Replica(name, engine)
        with self._lock:
            self.replicas[name] = replica
        try:
            engine.start()  # blocks until warm (model loaded, HTTP answering)
        except BaseException:  # never listed: /health must not show a replica that will not come
            with self._lock:
                self.replicas.pop(name, None)
            raise
        with self._lock:
            replica.status = "ready"
            self.admission.add_replica(name, concurrency, slots, accepting=accepting)
            self._pump()
            if self._prober is None:
                self._prober = threading.Thread(target=self._probe_forever, daemon=True, name="engine-health")
                self._prober.start()
        log.info("replica %s ready (%s, adapter %s)", name, engine.api_base, replica.adapter_version)
        return replica

    def route_new_sessions_to(self, name: str) -> None:
        """Send every NEW session to `name` only; sessions already placed elsewhere stay while it accepts."""
        with self._lock:
            self._get(name)
            for other in self.replicas.values():
                if other.status in ("ready", "restarting"):
                    self.admission.set_accepting(other.name, other.name == name)
            self._pump()

    def drain(self, name: str, timeout_s: float = 300.0) -> None:
        """Stop routing anything new to `name` and wait until its in-flight requests and streams finish."""
        with self._lock:
            r = self._get(name)
            r.status = "draining"
            self.admission.set_accepting(name, False)
        deadline = time.monotonic() + timeout_s
        while self.inflight(name) > 0:
            if time.monotonic() > deadline:
                raise RetryableError(f"replica {name} still has {self.inflight(name)} requests after {timeout_s} s")
            time.sleep(0.05)

    def stop_replica(self, name: str) -> None:
        """Drain (if not yet) and stop `name`; its sessions move to the others on their next turn."""
        if self.inflight(name) > 0:
            self.drain(name)
        with self._lock:
            r = self._get(name)
            self.admission.remove_replica(name)
            del self.replicas[name]
            r.status = "stopped"
        r.engine.stop()

    def close(self) -> None:
        """Stop every engine without waiting (the gateway is shutting down)."""
        self._closed.set()
        with self._lock:
            replicas = list(self.replicas.values())
            self.replicas.clear()
        for r in replicas:
            r.engine.stop()

    def info(self) -> list[ReplicaInfo]:
        """Which adapter version each replica serves, and its state."""
        with self._lock:
            return [
                ReplicaInfo(r.name, r.status, r.adapter_version,
                            r.name in self.admission.replicas and self.admission.replicas[r.name].accepting,
                            self.admission.inflight(r.name) if r.name in self.admission.replicas else 0,
                            r.engine.kind, r.engine.api_base)
                for r in self.replicas.values()
            ]

    def inflight(self, name: str) -> int:
        with self._lock:
            return self.admission.inflight(name) if name in self.admission.replicas else 0

    def _get(self, name: str) -> Replica:
        r = self.replicas.get(name)
        if r is None:
            raise NotFoundError(f"replica {name!r} does not exist (have: {', '.join(self.replicas) or 'none'})")
        return r

    # -- admission (async, on the gateway's loop) --
    async def acquire(self, ticket: Ticket) -> Replica:
        """Wait for a place on a replica; 429 when the queue is full, 503 after queue_timeout_s."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Ticket] = loop.create_future()
        with self._lock:
            if not self.admission.can_enqueue():
                waiting = len(self.admission.waiting)
                raise Overloaded(
                    f"the gateway queue is full ({waiting} requests waiting, queue_max={self.config.queue_max}); "
                    "retry after the Retry-After delay or raise serving.queue_max",
                    retry_after_s=float(max(1, waiting // max(1, self._capacity()))),
                )
            self._waiters[ticket.request_id] = (loop, fut)
            self.admission.enqueue(ticket)
            self._pump()
        try:
            # Not asyncio.wait_for: on Python 3.11 it swallows a cancel that lands just as the place is granted,
            # and a request whose client hung up then ran to max_tokens holding its slot.
            async with asyncio.timeout(self.config.queue_timeout_s):
                await asyncio.shield(fut)
        except (TimeoutError, asyncio.CancelledError) as e:
            with self._lock:
                self._waiters.pop(ticket.request_id, None)
                if ticket in self.admission.waiting:
                    self.admission.cancel(ticket)
                    if isinstance(e, asyncio.CancelledError):
                        raise
                    raise RetryableError(
                        f"request waited {self.config.queue_timeout_s:.0f} s without a free engine slot; "
                        "retry later or add replicas",
                        retry_after_s=5.0,
                    ) from None
                if isinstance(e, asyncio.CancelledError):  # placed meanwhile: give the place back
                    self.release(ticket)
                    raise
        with self._lock:
            assert ticket.replica is not None
            return self.replicas[ticket.replica]

    def release(self, ticket: Ticket) -> None:
        """Give the place back (and hand it to the next waiting request)."""
        with self._lock:
            self.admission.release(ticket)
            self._pump()

    def _capacity(self) -> int:
        return sum(r.concurrency for r in self.admission.replicas.values())

    def _pump(self) -> None:
        for t in self.admission.dispatch():
            waiter = self._waiters.pop(t.request_id, None)
            if waiter is None:  # the caller gave up between enqueue and dispatch
                self.admission.release(t)
                continue
            loop, fut = waiter
            loop.call_soon_threadsafe(_resolve, fut, t)

    # -- failures --
    def report_failure(self, name: str) -> None:
        """A request saw the engine fail: if its process is dead (or dies within 2 s), restart it."""
        with self._lock:
            r = self.replicas.get(name)
            if r is None or r.status == "restarting" or name in self._checking:
                return
            self._checking.add(name)
            if not r.engine.alive():  # take it out of rotation at once, before the next dispatch
                r.status = "restarting"
                self.admission.set_healthy(name, False)
        threading.Thread(target=self._check_and_restart, args=(r,), daemon=True, name=f"restart-{name}").start()

    def report_unreachable(self, name: str) -> None:
        """A request could not reach `name`'s engine: out of rotation at once, so the request goes elsewhere (a
        stopped node's replica, before its owner's death notice arrives); back in rotation if its engine still
        answers to `alive()` 2 s later, restarted if it died."""
        with self._lock:
            r = self.replicas.get(name)
            if r is None or r.status != "ready" or name not in self.admission.replicas:
                return
            self.admission.set_healthy(name, False)
        self.report_failure(name)

    def _probe_forever(self) -> None:
        """Probe every ready engine blacksoil runs (llama.cpp, vLLM) with a small real request; restart one that
        stops answering.

        A process that is alive but hung (SIGSTOP, a deadlock) used to stay "ready" while requests waited for
        request_timeout_s (600 s). Killing it turns those requests into labelled 503s and starts a fresh engine.
        """
        c = self.config
        failures: dict[str, int] = {}
        while not self._closed.wait(c.health_interval_s):
            with self._lock:
                # vLLM by its kind: serving/vllm.py imports this module, so it cannot be imported here.
                ready = [r for r in self.replicas.values()
                         if r.status == "ready" and (isinstance(r.engine, LlamaCppEngine) or r.engine.kind == "vllm")]
            for r in ready:
                if r.engine.probe(c.health_timeout_s):
                    failures.pop(r.name, None)
                    continue
                failures[r.name] = failures.get(r.name, 0) + 1
                if failures[r.name] >= c.health_failures and not self._closed.is_set():
                    log.warning("replica %s failed %d health probes in a row; restarting its engine", r.name,
                                failures.pop(r.name))
                    r.engine.kill()
                    self.report_failure(r.name)

    def _check_and_restart(self, r: Replica) -> None:
        deadline = time.monotonic() + 2.0
        while r.engine.alive() and time.monotonic() < deadline:  # a SIGKILLed child is reaped a moment later
            time.sleep(0.02)
        with self._lock:
            self._checking.discard(r.name)
            if r.name not in self.admission.replicas:
                return
            if r.engine.alive():
                if r.status == "ready" and not self.admission.replicas[r.name].healthy:  # report_unreachable's
                    self.admission.set_healthy(r.name, True)
                    self._pump()
                return
            r.status = "restarting"
            self.admission.set_healthy(r.name, False)
        for attempt in range(3):
            try:
                r.engine.restart()
                break
            except Exception:  # a failed restart is retried; the replica stays out of rotation meanwhile
                log.exception("restart %d of replica %s failed", attempt + 1, r.name)
                time.sleep(1.0)
        with self._lock:
            if r.name in self.admission.replicas and r.engine.alive():
                r.status = "ready"
                self.admission.set_healthy(r.name, True)
                self._pump()


def _resolve(fut: asyncio.Future[Ticket], t: Ticket) -> None:
    if not fut.done():
        fut.set_result(t)
