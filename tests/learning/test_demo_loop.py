"""The closed-loop demo at a tiny budget (what `make demo` runs, smaller): test splits scored before and after on
fresh engines, one round in between, the table's numbers in the result and the learning curve written under the
home (never into the checkout)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from blacksoil.config import load_settings


@pytest.fixture(scope="module")
def demo(blacksoil_home: Path) -> dict[str, Any]:
    from blacksoil.benchlog import destination
    from blacksoil.learning.context import LearnerContext
    from blacksoil.learning.loop import LoopOptions, run_demo

    s = load_settings(learning={"batch_size": 2}, agentscore={"step_budget": 3},
                      serving={"slots": 2, "ctx": 4096, "default_max_tokens": 64})
    opts = LoopOptions(suites=("tools-basic",), held_out=("tools-general",), attempts=1, tasks_per_suite=1,
                       gate_tasks=1, steps=2, exclusive_cores=True)
    return run_demo(1, opts, LearnerContext.from_settings(s), dest=destination(blacksoil_home), test_tasks=2)


def test_the_learned_suite_is_scored_before(demo: dict[str, Any]) -> None:
    assert demo["test_completion_before"] in (0.0, 0.5, 1.0)  # 2 test tasks


def test_the_learned_suite_is_scored_after(demo: dict[str, Any]) -> None:
    assert demo["test_completion_after"] in (0.0, 0.5, 1.0)


def test_the_held_out_suite_is_scored_before_and_after(demo: dict[str, Any]) -> None:
    assert set(demo["held_out"]) == {"tools-general"}
    assert set(demo["held_out"]["tools-general"]) == {"before", "after"}


def test_one_round_ran_and_published_a_candidate(demo: dict[str, Any]) -> None:
    (round1,) = demo["per_round"]
    assert round1["candidate"].startswith("v") and round1["steps"] == 2  # the session's home has other versions


def test_the_after_score_is_of_the_served_version(demo: dict[str, Any]) -> None:
    (round1,) = demo["per_round"]
    assert demo["served_version"] == round1["served"]


def test_the_learning_curve_is_written_under_the_home(demo: dict[str, Any], blacksoil_home: Path) -> None:
    assert (blacksoil_home / "results" / "img" / "learning_curve.png").stat().st_size > 0
