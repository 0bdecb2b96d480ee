"""The manufacturing task generator: with the caller's settings it reproduces the shipped suite file."""

from __future__ import annotations

import yaml

from blacksoil.factories.env_settings import EnvSettings
from blacksoil.factories.manufacturing.tasks.generate import HERE, manufacturing_tasks


def test_generator_with_passed_settings_reproduces_the_shipped_suite(env_settings: EnvSettings) -> None:
    # The RUL templates predict with the model cached under env_settings.home, the one the plant tools use.
    shipped = yaml.safe_load((HERE / "manufacturing.yaml").read_text())["tasks"]
    assert manufacturing_tasks(env_settings) == shipped
