"""The serving pod's engine parameters come from the environment the operator sets (k8s_engine.engine_params)."""

from __future__ import annotations

import pytest

from blacksoil.errors import ConfigError
from blacksoil.scheduling.backends.k8s_engine import engine_params

BASE = {"BLACKSOIL_ENGINE_API_KEY": "k", "BLACKSOIL_ENGINE_THREADS": "1"}


def test_the_prefill_chunk_reaches_llama_cpps_n_batch() -> None:
    assert engine_params(BASE | {"BLACKSOIL_ENGINE_PREFILL_CHUNK": "64"}).n_batch == 64


def test_without_a_prefill_chunk_the_engine_keeps_llama_cpps_2048() -> None:
    assert engine_params(BASE).n_batch == 2048


def test_a_prefill_chunk_under_16_is_refused_naming_the_variable() -> None:
    with pytest.raises(ConfigError, match="BLACKSOIL_ENGINE_PREFILL_CHUNK=8"):
        engine_params(BASE | {"BLACKSOIL_ENGINE_PREFILL_CHUNK": "8"})


def test_slots_and_port_come_from_the_environment() -> None:
    params = engine_params(BASE | {"BLACKSOIL_ENGINE_SLOTS": "3", "BLACKSOIL_ENGINE_PORT": "9001"})
    assert (params.n_parallel, params.port) == (3, 9001)


def test_an_engine_without_the_key_is_refused() -> None:
    with pytest.raises(ConfigError, match="BLACKSOIL_ENGINE_API_KEY"):
        engine_params({"BLACKSOIL_ENGINE_THREADS": "1"})
