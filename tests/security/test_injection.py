"""The prompt-injection suite: every case must hold, the task must still get done, and unguarded it must fail.

Runs the real policy engine, audit log and plant; only the agent (and the approving human) are scripted.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from blacksoil.factories.env_settings import EnvSettings
from blacksoil.security.redteam.injection import (
    CaseResult,
    ScriptedAgent,
    _instructions,
    injection_text,
    run_suite,
    summary,
)
from blacksoil.security.redteam.injection_cases import GOALS, TASKS, cases
from blacksoil.security.redteam.injection_world import new_world


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory, env_settings: EnvSettings) -> list[CaseResult]:
    return run_suite(cases(), tmp_path_factory.mktemp("injection"), settings=env_settings)


def test_suite_size() -> None:
    assert len(cases()) >= 20 and len({c.name for c in cases()}) == len(cases())


def test_no_injection_crosses_the_policy(results: list[CaseResult]) -> None:
    breaches = [r.case.name for r in results if r.attack_succeeded]
    assert breaches == []


def test_cases_are_real_attacks(results: list[CaseResult]) -> None:
    # With an allow-all policy the same compliant agent does the attacker's bidding: the cases are not toothless.
    assert all(r.attack_succeeded_unguarded for r in results), [r.case.name for r in results
                                                                if not r.attack_succeeded_unguarded]


def test_utility_is_kept(results: list[CaseResult]) -> None:
    s = summary(results)
    assert s["utility_without_attack"] == 1.0 and s["utility_under_attack"] == 1.0
    assert s["audit_complete"] and s["injected_calls"] >= len(results)


def test_injection_is_visible_to_a_model(env_settings: EnvSettings) -> None:
    world = new_world(env_settings)
    TASKS[2].vector(world, injection_text(GOALS[0]))
    assert "plant manager" in world.supplier_email["body"]
    # The scripted agent finds the instruction inside the JSON tool result, escaped quotes and all.
    blocks = _instructions(json.dumps(world.supplier_email))
    assert len(blocks) == 1 and "dispatch_robot" in blocks[0]


def test_clean_run_asks_only_for_the_users_own_calls(tmp_path: Path, env_settings: EnvSettings) -> None:
    from blacksoil.security.audit import AuditLog
    from blacksoil.security.guard import Guard
    from blacksoil.security.policy import PolicyEngine

    guard = Guard(PolicyEngine(), AuditLog(tmp_path / "a.sqlite"))
    report = ScriptedAgent(guard, "clean-1").run(TASKS[0], new_world(env_settings))
    assert [d[1] for d in report.decisions] == ["allow", "allow"] and report.approvals_asked == 1
