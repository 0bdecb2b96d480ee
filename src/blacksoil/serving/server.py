"""`blacksoil serve`: engines plus the gateway in the foreground until Ctrl-C.

Settings come from blacksoil.toml / BLACKSOIL_SERVING__* with command-line overrides on top.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from typing import Any

import uvicorn
from fastapi import FastAPI
from pydantic import ValidationError
from rich.console import Console

from blacksoil.config import Settings
from blacksoil.contracts import AdapterVersion, ExperienceSink
from blacksoil.errors import ConfigError
from blacksoil.experience.sink import JsonlSink, experience_path
from blacksoil.serving.app import create_app
from blacksoil.serving.config import ServingConfig
from blacksoil.serving.launch import build_pool
from blacksoil.serving.tracing import install as install_tracing


def serving_config(base_config: ServingConfig, overrides: dict[str, Any]) -> ServingConfig:
    """`base_config` with command-line overrides; a bad value is a ConfigError naming it."""
    base = base_config.model_dump()
    try:
        return ServingConfig.model_validate(base | overrides)
    except ValidationError as e:
        bad = "; ".join(f"--{'.'.join(str(x) for x in err['loc']) or 'options'} {err.get('input')!r}: {err['msg']}"
                        for err in e.errors())
        raise ConfigError(f"invalid serving option: {bad}") from None


def serve_forever(s: Settings, overrides: dict[str, Any], *, sink: ExperienceSink | None = None,
                  configure: Callable[[FastAPI, str], None] | None = None,
                  adapter: AdapterVersion | None = None) -> None:
    """Start the engines, then run uvicorn in this thread; stop the engines (and an own sink) on exit.

    `sink` defaults to the raw JSONL file; `configure(app, url)` lets the platform add its routes first.
    """
    cfg = serving_config(s.serving, overrides)
    _check_port(cfg.host, cfg.port)
    console = Console(stderr=True)
    console.print(f"starting {cfg.replicas if not cfg.upstreams else len(cfg.upstreams)} engine replica(s)…")
    pool = build_pool(s, cfg, adapter)
    install_tracing(cfg.tracing)  # OTLP export when [serving.tracing] otlp_endpoint is set, else a no-op
    the_sink: ExperienceSink = sink if sink is not None else JsonlSink(experience_path(s))
    try:
        app = create_app(pool, sink=the_sink, default_max_tokens=cfg.default_max_tokens,
                         capture_tokens=cfg.capture_tokens, home=str(s.home))
        if configure is not None:
            configure(app, f"http://{cfg.host}:{cfg.port}")
        console.print(f"serving {pool.served_name!r} on http://{cfg.host}:{cfg.port}/v1 "
                      f"(metrics /metrics, experience → {type(the_sink).__name__})")
        uvicorn.run(app, host=cfg.host, port=cfg.port, log_level="warning")
    finally:
        pool.close()
        if sink is None:
            the_sink.close()


def _check_port(host: str, port: int) -> None:
    with socket.socket() as sock:
        try:
            sock.bind((host, port))
        except OSError as e:
            raise ConfigError(f"cannot listen on {host}:{port} ({e.strerror}); pass another --port or --host") from None
