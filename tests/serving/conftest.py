"""Fixtures of the serving tests: one real gateway (embedded llama.cpp, default model) shared by the modules.

Small, single-threaded engines so the suite stays short on a shared 2-core machine.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from blacksoil.config import load_settings
from blacksoil.platform import running_platform
from blacksoil.serving.config import ServingConfig
from blacksoil.serving.launch import GatewayHandle, gateway

KEY = "fuzz-key-0123456789abcdef"
"""API key of tenant `acme` on the `up_gw` platform."""
BETA_KEY = "fuzz-key-beta-0123456789"
"""API key of tenant `beta` on the `up_gw` platform."""


def small_config(**changes: object) -> ServingConfig:
    """Engine settings sized for tests: 1 thread, 4 slots of 1024 tokens, 2 running."""
    base = {"threads": 1, "slots": 4, "concurrency": 2, "ctx": 4096, "default_max_tokens": 16,
            "queue_timeout_s": 60.0}
    return ServingConfig.model_validate(base | changes)


@pytest.fixture(scope="session")
def gw() -> Iterator[GatewayHandle]:
    """A running gateway over one embedded engine."""
    with gateway(load_settings(), serving=small_config()) as handle:
        yield handle


def _platform(api_keys: dict[str, str]) -> Iterator[GatewayHandle]:
    # max_tokens_cap keeps every fuzzed generation short on a shared 2-core machine.
    s = load_settings(serving=small_config(max_tokens_cap=8).model_dump(), platform={"api_keys": api_keys})
    with running_platform(s) as gw:
        yield gw


@pytest.fixture(scope="module")
def serve_gw() -> Iterator[GatewayHandle]:
    """The platform as `blacksoil serve` runs it: store sink, feedback API, console, no API keys."""
    yield from _platform({})


@pytest.fixture(scope="module")
def up_gw() -> Iterator[GatewayHandle]:
    """The platform as `blacksoil up` runs it, with API keys of two tenants (acme, beta)."""
    yield from _platform({KEY: "acme", BETA_KEY: "beta"})
