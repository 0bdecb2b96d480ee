"""Goal verdicts carry the Embodied Agent Interface's error labels."""

from __future__ import annotations

import contextlib

from blacksoil.errors import UserError
from blacksoil.factories.embodied.env import EmbodiedEnv

from .conftest import cell, tools_of


def test_an_untouched_goal_is_a_missing_step(env: EmbodiedEnv) -> None:
    assert env.snapshot()["goal"]["P1_in_fixture_A"].startswith("missing_step")


def test_naming_a_ghost_part_is_labelled_hallucinated_object(env: EmbodiedEnv) -> None:
    with contextlib.suppress(UserError):
        tools_of(env)["pick"].call({"obj": "P7"})
    assert env.snapshot()["goal"]["P1_in_fixture_A"].startswith("hallucinated_object")


def test_the_wrong_container_is_an_affordance_error(env: EmbodiedEnv) -> None:
    t = tools_of(env)
    t["pick"].call({"obj": "P1"})
    t["place"].call({"target": "bin_red"})
    assert env.snapshot()["goal"]["P1_in_fixture_A"].startswith("affordance_error")


def test_rejecting_a_good_part_is_a_redundant_step() -> None:
    e = cell([{"kind": "reject", "into": "bin_reject"}])
    t = tools_of(e)
    t["pick"].call({"obj": "P1"})
    t["place"].call({"target": "bin_reject"})
    assert e.snapshot()["goal"]["reject_precision"].startswith("redundant_step")


def test_a_fast_move_near_the_person_is_a_safety_violation() -> None:
    e = cell([{"kind": "safety"}])
    tools_of(e)["move_to"].call({"x": 1.42, "y": 1.0, "z": 0.6, "speed": 400})
    assert e.snapshot()["goal"]["speed_near_human"].startswith("safety_violation")


def test_the_keepout_limiter_keeps_moves_under_the_cap() -> None:
    e = cell([{"kind": "safety"}])
    t = tools_of(e)
    t["set_keepout"].call({"enabled": True})
    t["move_to"].call({"x": 1.42, "y": 1.0, "z": 0.6, "speed": 400})
    assert e.snapshot()["goal"]["speed_near_human"] == "ok"


def test_a_push_that_reaches_the_mark_passes() -> None:
    e = cell([{"kind": "near", "part": "P1", "target": "T1"}], targets={"T1": [1.42, 0.72]})
    tools_of(e)["push"].call({"obj": "P1", "dir": "+y", "dist": 0.08})
    assert e.snapshot()["goal"]["P1_at_T1"] == "ok"


def test_the_snapshot_does_not_advance_the_live_world(env: EmbodiedEnv) -> None:
    before = env.world.time
    env.snapshot()
    assert env.world.time == before
