"""Fixtures of the serving tests: one real gateway (embedded llama.cpp, default model) shared by the modules.

Small, single-threaded engines so the suite stays short on a shared 2-core machine.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from blacksoil.config import load_settings
from blacksoil.serving.config import ServingConfig
from blacksoil.serving.launch import GatewayHandle, gateway


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
