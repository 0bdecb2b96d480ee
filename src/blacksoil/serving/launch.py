"""Start a whole gateway (engines + uvicorn on loopback) for tests, the demo and other pillars.

`with gateway(settings) as gw: OpenAI(base_url=gw.openai_base_url, api_key="x")` — everything stops on exit.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import httpx
import uvicorn
from fastapi import FastAPI

from blacksoil.config import Settings
from blacksoil.contracts import AdapterVersion, ExperienceSink
from blacksoil.errors import ConfigError, InternalError
from blacksoil.experience.sink import JsonlSink, experience_path
from blacksoil.serving.app import create_app
from blacksoil.serving.config import ServingConfig
from blacksoil.serving.models import ModelRegistry
from blacksoil.serving.pool import ReplicaPool
from blacksoil.serving.tracing import install as install_tracing
from blacksoil.serving.vllm import attach_vllm_pool, build_vllm_pool


@dataclass
class GatewayHandle:
    """A running gateway."""

    url: str
    """http://127.0.0.1:PORT"""
    model: str
    """Served model name (use it as `model` in requests)."""
    app: FastAPI
    pool: ReplicaPool
    sink: ExperienceSink | None

    @property
    def openai_base_url(self) -> str:
        """Base URL for the openai SDK."""
        return self.url + "/v1"


def listen_socket(host: str, port: int) -> socket.socket:
    """A socket bound to host:port (0 = any free port) before any engine starts; ConfigError when it is taken.

    The gateway serves on this very socket, so a start-up health check can only ever reach our own server
    (a second `blacksoil up` on a busy port used to find the other server healthy and never exit).
    """
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as e:
        sock.close()
        raise ConfigError(f"cannot listen on {host}:{port} ({e.strerror}); pass another --port") from None
    sock.listen(2048)  # listening at once: nobody else can take the port while the engines load
    return sock


def build_pool(s: Settings, cfg: ServingConfig, adapter: AdapterVersion | None = None,
               cores: tuple[int, ...] = (), engines: bool = True) -> ReplicaPool:
    """Start the engines the configuration asks for (embedded replicas with `adapter` on `cores`, () = wherever the
    OS puts them; or upstream URLs). `engines=False`: an empty pool of the configured model, whose replicas a
    backend running engines elsewhere adds (the Ray backend)."""
    if not engines and cfg.upstreams:
        raise ConfigError("serving.upstreams are engines already running; a gateway without engines of its own "
                          "serves the embedded model (drop serving.upstreams)")
    if cfg.upstreams and cfg.engine == "vllm":  # a running vLLM: its token capture and runtime LoRA, not generic
        return attach_vllm_pool(cfg)
    if cfg.upstreams:
        pool = ReplicaPool(cfg, None, cfg.model or "")
        for url in cfg.upstreams:
            r = pool.add_upstream(url)
            if not pool.served_name:
                pool.served_name = r.engine.model_id or "upstream"
        return pool
    entry = ModelRegistry(s.home).resolve(cfg.model)
    if not engines:
        return ReplicaPool(cfg, entry, entry.name)
    if cfg.engine == "vllm":  # one vLLM server, its replicas are the base model and runtime-loaded adapters
        return build_vllm_pool(s.home, cfg, entry, adapter)
    pool = ReplicaPool(cfg, entry, entry.name)
    try:
        for _ in range(cfg.replicas):
            pool.start_replica(adapter, cores=cores)
    except BaseException:
        pool.close()
        raise
    return pool


class _Server(uvicorn.Server):
    def install_signal_handlers(self) -> None:  # runs in a thread: leave signals to the main thread
        pass


@contextlib.contextmanager
def gateway(settings: Settings, *, port: int = 0, model: str | None = None,
            replicas: int | None = None, sink: ExperienceSink | None = None,
            serving: ServingConfig | None = None, adapter: AdapterVersion | None = None,
            configure: Callable[[FastAPI, str], None] | None = None,
            cores: tuple[int, ...] = (), engines: bool = True) -> Iterator[GatewayHandle]:
    """Start engines (serving `adapter`, None = the base model; pinned to `cores`, () = unpinned) and the gateway on
    127.0.0.1, wait for /health, yield, stop everything.

    `engines=False`: no engine of its own; /health says 503 until a backend adds a replica (`pool.add_remote`).

    `configure(app, url)` runs before the server starts: the platform adds auth, the feedback API and the console.
    """
    if settings is None:  # callers holding the root settings as `Any` (a context built without them)
        raise InternalError("serving.launch.gateway needs the root settings: build the caller's context with them")
    s = settings
    cfg = serving or s.serving
    changes: dict[str, object] = {}
    if model is not None:
        changes["model"] = model
    if replicas is not None:
        changes["replicas"] = replicas
    if changes:
        cfg = ServingConfig.model_validate(cfg.model_dump() | changes)
    install_tracing(cfg.tracing)  # OTLP export when [serving.tracing] otlp_endpoint is set, else a no-op
    sock = listen_socket("127.0.0.1", port)
    port = int(sock.getsockname()[1])
    own_sink = sink is None
    server: _Server | None = None
    thread: threading.Thread | None = None
    the_sink: ExperienceSink = sink if sink is not None else JsonlSink(experience_path(s))
    try:
        pool = build_pool(s, cfg, adapter, cores, engines)
    except BaseException:
        sock.close()
        if own_sink:
            the_sink.close()
        raise
    try:
        app = create_app(pool, sink=the_sink, default_max_tokens=cfg.default_max_tokens,
                         capture_tokens=cfg.capture_tokens, home=str(s.home))
        if configure is not None:
            configure(app, f"http://127.0.0.1:{port}")
        server = _Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                                        timeout_graceful_shutdown=5))
        thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True,
                                  name=f"gateway-{port}")
        thread.start()
        url = f"http://127.0.0.1:{port}"
        _wait_healthy(url, thread, ready=engines)
        yield GatewayHandle(url, pool.served_name, app, pool, the_sink)
    finally:
        if server is not None:
            server.should_exit = True
        if thread is not None:
            thread.join(timeout=10)
        pool.close()
        sock.close()
        if own_sink:
            the_sink.close()


def _wait_healthy(url: str, thread: threading.Thread, timeout_s: float = 30.0, ready: bool = True) -> None:
    """Until /health answers 200 (any answer when `ready` is False: no engine is there yet)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not thread.is_alive():
            raise ConfigError(f"the gateway at {url} stopped while starting; is the port taken? pick another --port")
        try:
            if httpx.get(url + "/health", timeout=2).status_code in ((200,) if ready else (200, 503)):
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    raise InternalError(f"the gateway at {url} did not become healthy within {timeout_s:.0f} s")
