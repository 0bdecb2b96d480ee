"""Practice tasks: fresh train instances from the suites' own generators, never a dev or test task."""

from __future__ import annotations

import pytest

from blacksoil.agentscore import api
from blacksoil.agentscore.agents import OracleAgent
from blacksoil.errors import ConfigError
from blacksoil.factories.env_settings import EnvSettings


@pytest.mark.parametrize("suite", ["tools-basic", "manufacturing"])
def test_practice_tasks_are_fresh_train_instances_the_oracle_solves(suite: str, env_settings: EnvSettings) -> None:
    tasks = api.practice_tasks(suite, 2, settings=env_settings)
    shipped = api.list_tasks(suite)
    templates = {t.id.rsplit("-", 1)[0].split("-", 1)[1] for t in shipped}
    assert {t.id.removeprefix("practice-").rsplit("-", 1)[0].split("-", 1)[1] for t in tasks} == templates
    assert all(t.split == "train" and t.suite == suite for t in tasks)
    held_out = {(t.instruction, t.initial.model_dump_json()) for t in shipped if t.split in ("dev", "test")}
    assert not held_out & {(t.instruction, t.initial.model_dump_json()) for t in tasks}
    assert not {t.id for t in shipped} & {t.id for t in tasks}
    for task in tasks[:: max(1, len(tasks) // 8)]:
        assert api.run_task(OracleAgent(), task, settings=env_settings).passed, task.id


def test_practice_instances_that_equal_a_test_task_are_dropped(monkeypatch: pytest.MonkeyPatch,
                                                               env_settings: EnvSettings) -> None:
    from blacksoil.agentscore import practice

    test_task = api.list_tasks("tools-basic", "test")[0]
    fake = {"id": "practice-tb-x-1", "split": "train", "category": "c", "tags": [],
            "instruction": test_task.instruction, "initial": test_task.initial.model_dump(),
            "tools": list(test_task.tools), "checker": [c.model_dump(exclude_none=True) for c in test_task.checker],
            "oracle": [o if isinstance(o, dict) else o.model_dump(exclude_none=True) for o in test_task.oracle]}
    monkeypatch.setitem(practice.GENERATORS, "tools-basic", lambda n, settings: ("tools-basic", [fake]))
    assert practice.practice_tasks("tools-basic", 1, env_settings) == []


def test_suites_without_a_generator_or_bad_counts_are_refused(env_settings: EnvSettings) -> None:
    with pytest.raises(ConfigError, match="jobshop-quality"):
        api.practice_tasks("jobshop-quality", 1, settings=env_settings)
    with pytest.raises(ConfigError, match="per_template=0"):
        api.practice_tasks("tools-basic", 0, settings=env_settings)
