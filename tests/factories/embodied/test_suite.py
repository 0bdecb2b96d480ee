"""The embodied suite: size, templates, splits, a deterministic generator, perturbed replays, reproducibility."""

from __future__ import annotations

import pytest

from blacksoil.agentscore import api
from blacksoil.factories.embodied.bench import replay
from blacksoil.factories.embodied.tasks.generate import HERE, STATE_DEPENDENT, build
from blacksoil.factories.env_settings import EnvSettings

TASKS = api.list_tasks("embodied")


def test_the_suite_has_at_least_forty_tasks() -> None:
    assert len(TASKS) >= 40


def test_the_suite_has_at_least_eight_templates() -> None:
    assert len({t.category for t in TASKS}) >= 8


@pytest.mark.parametrize("split", ["train", "dev", "test"])
def test_every_split_has_tasks(split: str) -> None:
    assert api.list_tasks("embodied", split)


def test_the_generator_reproduces_the_shipped_file() -> None:
    import yaml

    shipped = yaml.safe_load((HERE / "embodied.yaml").read_text())
    assert build() == shipped


@pytest.mark.parametrize("category", STATE_DEPENDENT)
def test_the_oracle_plan_fails_on_a_perturbed_start(category: str) -> None:
    task = next(t for t in TASKS if t.category == category and t.split == "dev")
    assert replay(task, perturb=1)[0] is False


def test_the_oracle_plan_passes_on_its_own_start() -> None:
    task = next(t for t in TASKS if t.category == "push" and t.split == "dev")
    assert replay(task)[0] is True


def test_an_episode_reproduces_bit_for_bit(env_settings: EnvSettings) -> None:
    task = next(t for t in TASKS if t.category == "stack" and t.split == "test")
    runs = [api.run_task(api.make_agent("oracle"), task, settings=env_settings) for _ in range(2)]
    steps = [[(s["name"], s["result"]) for s in ep.trajectory["steps"]] for ep in runs]
    assert steps[0] == steps[1]
