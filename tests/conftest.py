"""Shared test setup: the machine's system packages, and an isolated BLACKSOIL_HOME per test session.

Pillar-specific fixtures (engine, store, PostgreSQL) live in tests/<pillar>/conftest.py. No test installs
anything itself: `tools/system-deps.sh` (also `make system-deps`) is the one place that does, and it runs here
before any test, so any subset of the suite works on a fresh machine.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from blacksoil.factories.env_settings import EnvSettings

SYSTEM_DEPS = Path(__file__).resolve().parents[1] / "tools" / "system-deps.sh"


def pytest_sessionstart(session: pytest.Session) -> None:
    """Provision bubblewrap, PostgreSQL and Chromium before any test runs (a no-op when all are there)."""
    res = subprocess.run(["bash", str(SYSTEM_DEPS)], capture_output=True, text=True, timeout=1800)
    if res.returncode != 0:
        raise pytest.UsageError((res.stderr or res.stdout).strip() or f"{SYSTEM_DEPS} failed ({res.returncode})")


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


@pytest.fixture(scope="session")
def env_settings(blacksoil_home: Path) -> EnvSettings:
    """The environments' settings under the session's home (default manufacturing settings): what a CLI passes."""
    return EnvSettings(blacksoil_home)
