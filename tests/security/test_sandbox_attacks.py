"""Every attack of the red-team catalogue, run in the real sandbox: none may escape.

The same catalogue backs `blacksoil redteam sandbox`.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from blacksoil.security.redteam.attacks import ATTACKS, Attack
from blacksoil.security.redteam.sandbox_suite import ATTACK_LIMITS, Harness, harness, run_attack
from blacksoil.security.sandbox import Sandbox


@pytest.fixture(scope="module")
def attack_harness(bwrap: str) -> Iterator[tuple[Sandbox, Harness]]:
    with harness() as h:
        yield Sandbox(ATTACK_LIMITS), h


def test_catalogue_is_large_and_named_uniquely() -> None:
    names = [a.name for a in ATTACKS]
    assert len(names) >= 30 and len(set(names)) == len(names)
    assert {a.category for a in ATTACKS} >= {"files", "proc", "network", "secrets", "privileges", "resources"}


@pytest.mark.parametrize("attack", ATTACKS, ids=[a.name for a in ATTACKS])
def test_attack_does_not_escape(attack_harness: tuple[Sandbox, Harness], attack: Attack) -> None:
    sandbox, h = attack_harness
    outcome = run_attack(sandbox, h, attack)
    assert not outcome.escaped, f"{attack.name} escaped: {outcome.evidence}"
