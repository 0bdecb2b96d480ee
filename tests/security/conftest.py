"""Fixtures of the security tests: a fresh audit store per test, the shipped policy engine, the sandbox.

The sandbox needs bubblewrap; when it is missing and we are root, the session installs it from apt.
"""

from __future__ import annotations

import os
import shutil
import subprocess
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
    """Path of bubblewrap, installed from apt on a fresh machine where we may (root, apt-get present)."""
    found = shutil.which("bwrap")
    if found is None and os.geteuid() == 0 and shutil.which("apt-get"):
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        for cmd in (["apt-get", "install", "-y", "-q", "bubblewrap"], ["apt-get", "update", "-q"],
                    ["apt-get", "install", "-y", "-q", "bubblewrap"]):
            subprocess.run(cmd, capture_output=True, timeout=300, env=env)
            found = shutil.which("bwrap")
            if found:
                break
    if found is None:
        pytest.fail("bubblewrap is missing: run `sudo apt-get install -y bubblewrap` (the sandbox needs it)")
    return found
