"""Fixtures of the experience tests: one shared anonymizer, a throwaway PostgreSQL, stores on both backends.

PostgreSQL is started from Debian's binaries (installed if missing); with CI=true a failure fails the tests.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from blacksoil.experience.anonymizer import Anonymizer
from blacksoil.experience.pgtemp import TempPostgres
from blacksoil.experience.store import ExperienceStore, default_url


@pytest.fixture(scope="session")
def anonymizer() -> Anonymizer:
    return Anonymizer()


@pytest.fixture(scope="session")
def postgres() -> Iterator[TempPostgres]:
    pg = TempPostgres()
    try:
        pg.start()
    except Exception as e:
        if os.environ.get("CI") == "true":
            pytest.fail(f"PostgreSQL could not be started in CI: {e}")
        pytest.skip(f"PostgreSQL could not be started: {e}")
    yield pg
    pg.stop()


@pytest.fixture
def postgres_url(postgres: TempPostgres) -> str:
    """A fresh, empty database on the session's cluster."""
    return postgres.new_database("t_" + uuid.uuid4().hex[:12])


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return default_url(tmp_path)
    return str(request.getfixturevalue("postgres_url"))


@pytest.fixture
def store(store_url: str, anonymizer: Anonymizer) -> Iterator[ExperienceStore]:
    st = ExperienceStore(store_url, anonymizer=anonymizer)
    yield st
    st.close()
