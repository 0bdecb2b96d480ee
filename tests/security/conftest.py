"""Fixtures of the security tests: a fresh audit store per test, the shipped policy engine, the sandbox.

The sandbox needs bubblewrap; tools/system-deps.sh (run by tests/conftest.py) provides it.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from blacksoil.security.audit import AuditLog
from blacksoil.security.guard import Guard
from blacksoil.security.policy import PolicyEngine


@pytest.fixture(scope="session")
def engine() -> PolicyEngine:
    return PolicyEngine()


@pytest.fixture
def audit(tmp_path: Path) -> Iterator[AuditLog]:
    log = AuditLog(tmp_path / "audit.sqlite")
    yield log
    log.connection.close()


@pytest.fixture
def guard(engine: PolicyEngine, audit: AuditLog) -> Guard:
    return Guard(engine, audit)


@pytest.fixture(scope="session")
def bwrap() -> str:
    """Path of bubblewrap (provisioned by tools/system-deps.sh before the session)."""
    found = shutil.which("bwrap")
    if found is None:
        pytest.fail("bubblewrap is missing: run `sudo apt-get install -y bubblewrap` (the sandbox needs it)")
    return found
