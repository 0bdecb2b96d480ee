"""Every task of every suite: the oracle passes, the null agent fails, and perturbed final states fail.

This is what makes the checkers honest: each has a passing case (oracle) and failing cases (null, perturbations).
"""

from __future__ import annotations

from functools import cache
from typing import Any

import pytest

from blacksoil.agentscore import api
from blacksoil.agentscore.agents import OracleAgent, ToolBox, Trajectory
from blacksoil.agentscore.checkers import check
from blacksoil.agentscore.environments import env_for
from blacksoil.agentscore.tasks import Task
from blacksoil.factories.env_settings import EnvSettings

ALL = [(s, t.id) for s in api.suites() for t in api.list_tasks(s)]


@cache
def _oracle_final(suite: str, task_id: str, settings: EnvSettings) -> tuple[dict[str, Any], dict[str, Any], str]:
    """(initial state, final state, answer) of the oracle on one task."""
    task = api.get_task(suite, task_id)
    env = env_for(task, settings)
    initial = env.snapshot()
    traj = Trajectory()
    OracleAgent().run(task, env, ToolBox(env, task.tools, traj))
    return initial, env.snapshot(), traj.answer


def _has(task: Task, *kinds: str) -> bool:
    return any(getattr(p, k) is not None for p in task.checker for k in kinds)


@pytest.mark.parametrize(("suite", "task_id"), ALL)
def test_oracle_passes_and_perturbations_fail(suite: str, task_id: str, env_settings: EnvSettings) -> None:
    task = api.get_task(suite, task_id)
    initial, final, answer = _oracle_final(suite, task_id, env_settings)
    verdict = check(task, final, answer)
    assert verdict.passed, [c.detail for c in verdict.checks if not c.passed]
    if _has(task, "path", "count", "makespan_quality"):
        # The right words on an untouched plant do not pass: the state predicates carry weight.
        assert not check(task, initial, answer).passed
    if _has(task, "answer_contains", "answer_number"):
        # The right final state with an empty answer does not pass: the required facts carry weight.
        assert not check(task, final, "").passed


@pytest.mark.parametrize("suite", api.suites())
def test_null_agent_fails_every_task_of_every_suite(suite: str, env_settings: EnvSettings) -> None:
    eps = api.run_tasks(api.make_agent("null"), api.list_tasks(suite), settings=env_settings)
    assert sum(e.passed for e in eps) / len(eps) <= 0.05
    assert not [e.task_id for e in eps if e.passed]
    # Guards that held before the agent acted earn nothing: doing nothing gets reward 0, not partial credit.
    assert not [e.task_id for e in eps if e.reward > 0]


def test_run_task_returns_reward_and_trajectory_for_the_learner(env_settings: EnvSettings) -> None:
    task = api.list_tasks("tools-basic", "train")[0]
    ep = api.run_task(api.make_agent("oracle"), task, settings=env_settings)
    assert ep.passed and ep.reward == 1.0 and ep.trial == 0
    kinds = [s["kind"] for s in ep.trajectory["steps"]]
    assert kinds[-1] == "answer" and "tool" in kinds and ep.trajectory["answer"]
    ep0 = api.run_task(api.make_agent("null"), task, settings=env_settings)
    assert not ep0.passed and ep0.reward == 0.0 and ep0.tool_calls == 0


def test_tool_errors_reach_the_agent_as_messages_not_exceptions(env_settings: EnvSettings) -> None:
    task = api.list_tasks("tools-basic", "train")[0]
    env = env_for(task, env_settings)
    box = ToolBox(env, task.tools, Trajectory())
    result, error = box.call("calculator", {"expression": "__import__('os')"})
    assert result is None and error and "calculator supports" in error
    _, error = box.call("send_message", {"to": "x", "text": "y"})
    assert error and "not available" in error
    assert [s.error is not None for s in box.trajectory.steps] == [True, True]


def test_concurrent_episodes_keep_task_order_and_results(env_settings: EnvSettings) -> None:
    from blacksoil.errors import ConfigError

    tasks = api.list_tasks("tools-basic", "dev")
    seen: list[str] = []
    eps = api.run_tasks(OracleAgent(), tasks, k=2, concurrency=3, on_episode=lambda e: seen.append(e.task_id),
                        settings=env_settings)
    assert [(e.task_id, e.trial) for e in eps] == [(t.id, k) for t in tasks for k in range(2)]
    assert all(e.passed for e in eps) and sorted(seen) == sorted(e.task_id for e in eps)
    with pytest.raises(ConfigError, match="concurrency=0"):
        api.run_tasks(OracleAgent(), tasks, concurrency=0, settings=env_settings)
