"""Shared fixtures of the embodied factory tests: small real MuJoCo cells."""

from __future__ import annotations

from typing import Any

import pytest

from blacksoil.factories.embodied.env import EmbodiedEnv
from blacksoil.factories.toolspec import ToolSpec

PARTS: list[dict[str, Any]] = [
    {"id": "P1", "colour": "red", "size": "medium", "x": 1.42, "y": 0.64},
    {"id": "P2", "colour": "blue", "size": "small", "x": 1.42, "y": 0.40, "defect": "crack"},
]


def cell(goal: list[dict[str, Any]] | None = None, **extra: Any) -> EmbodiedEnv:
    """A fresh two-part cell with the given goal specs."""
    return EmbodiedEnv(0, {"parts": PARTS, "goal": goal or [{"kind": "in", "part": "P1", "into": "fixture_A"}],
                           **extra})


def tools_of(env: EmbodiedEnv) -> dict[str, ToolSpec]:
    """The environment's tools by name."""
    return {t.name: t for t in env.tools()}


@pytest.fixture
def env() -> EmbodiedEnv:
    """A fresh cell whose goal is P1 in fixture_A."""
    return cell()
