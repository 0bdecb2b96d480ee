"""Practice tasks: fresh train instances drawn from a suite's own task generator, for learning only.

A shipped suite holds three train tasks per template; a learner needs more variety than that. Practice tasks come
from the same templates with seeds the shipped suite never uses, all in the train split, and any instance that
coincides with a shipped dev or test task (same instruction and initial state) is dropped, so held-out splits
stay held out.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import yaml

from blacksoil.errors import ConfigError
from blacksoil.factories.env_settings import EnvSettings

from .tasks import Task, list_tasks, parse_suite

# Seeds / indices far above those the shipped suites use (manufacturing: < 60, tools-basic: < 4).
PRACTICE_OFFSET = 1000


def _manufacturing(n: int, settings: EnvSettings) -> tuple[str, list[dict[str, Any]]]:
    from blacksoil.factories.manufacturing.tasks.generate import manufacturing_tasks

    return "manufacturing", manufacturing_tasks(settings, n, first_seed=PRACTICE_OFFSET, seeds=60 * n,
                                                split=lambda i: "train", id_prefix="practice-mfg")


def _tools_basic(n: int, settings: EnvSettings) -> tuple[str, list[dict[str, Any]]]:
    from .suites.generate import tools_basic_tasks

    return "tools-basic", tools_basic_tasks(n, first_index=PRACTICE_OFFSET, split=lambda i: "train",
                                            id_prefix="practice-tb")


# Every generator takes the settings (the manufacturing one predicts RULs with the plant's model).
GENERATORS: dict[str, Callable[[int, EnvSettings], tuple[str, list[dict[str, Any]]]]] = {
    "manufacturing": _manufacturing,
    "tools-basic": _tools_basic,
}


def practice_tasks(suite: str, per_template: int, settings: EnvSettings) -> list[Task]:
    """`per_template` fresh train instances of every template of `suite`, none equal to a dev or test task;
    generated with `settings` (the environments' settings)."""
    if suite not in GENERATORS:
        raise ConfigError(f"suite {suite!r} has no task generator for practice tasks; use one of "
                          f"{', '.join(GENERATORS)} (or learn from its train split only)")
    if per_template < 1:
        raise ConfigError(f"per_template={per_template} must be at least 1")
    domain, raw = GENERATORS[suite](per_template, settings)
    held_out = {_key(t.instruction, t.initial.model_dump()) for split in ("dev", "test")
                for t in list_tasks(suite, split)}
    kept = [t for t in raw if _key(t["instruction"], t["initial"]) not in held_out]
    if not kept:
        return []
    text = yaml.safe_dump({"suite": suite, "domain": domain, "description": "practice tasks", "tasks": kept},
                          sort_keys=False)
    return list(parse_suite(text, f"<practice tasks of {suite}>").tasks)


def _key(instruction: str, initial: dict[str, Any]) -> str:
    return instruction + "\0" + yaml.safe_dump(initial, sort_keys=True)
