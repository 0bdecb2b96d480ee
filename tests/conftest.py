"""Shared test fixtures: an isolated BLACKSOIL_HOME per test session.

Pillar-specific fixtures (engine, store, PostgreSQL) live in tests/<pillar>/conftest.py.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture(scope="session", autouse=True)
def blacksoil_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Point BLACKSOIL_HOME at a fresh folder so tests never touch ~/.blacksoil."""
    home = tmp_path_factory.mktemp("bs-home")
    old = os.environ.get("BLACKSOIL_HOME")
    os.environ["BLACKSOIL_HOME"] = str(home)
    # Benchmarks run by tests report into a scratch copy, never into the tracked docs/benchmarks.md.
    os.environ["BLACKSOIL_BENCH_DOC"] = str(tmp_path_factory.mktemp("bench-doc") / "benchmarks.md")
    from blacksoil.config import settings

    settings.cache_clear()
    yield home
    if old is None:
        os.environ.pop("BLACKSOIL_HOME", None)
    else:
        os.environ["BLACKSOIL_HOME"] = old
    settings.cache_clear()
