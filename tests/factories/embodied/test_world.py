"""The physics under the tools: grasps, placement accuracy, the mocap weld, determinism, clear errors."""

from __future__ import annotations

import numpy as np
import pytest

from blacksoil.errors import UserError
from blacksoil.factories.embodied.env import EmbodiedEnv
from blacksoil.factories.embodied.world import DOWN

from .conftest import cell, tools_of


def test_pick_reports_a_detected_grasp(env: EmbodiedEnv) -> None:
    assert tools_of(env)["pick"].call({"obj": "P1"})["grasped"] is True


def test_place_into_a_fixture_lands_within_two_centimetres(env: EmbodiedEnv) -> None:
    t = tools_of(env)
    t["pick"].call({"obj": "P1"})
    t["place"].call({"target": "fixture_A"})
    p = env.world.part_pos("P1")
    assert float(np.hypot(p[0] - 1.27, p[1] - 0.62)) < 0.02


def test_the_weld_reset_keeps_the_gripper_pointing_down(env: EmbodiedEnv) -> None:
    tools_of(env)["move_to"].call({"x": 1.2, "y": 0.5, "z": 0.6})
    quat = env.world.data.xquat[env.world.model.body("robot0:gripper_link").id]
    assert abs(float(np.dot(quat, DOWN))) > 0.999


def test_every_tool_call_advances_simulated_time(env: EmbodiedEnv) -> None:
    assert tools_of(env)["open_gripper"].call({})["t"] > 0


def test_the_log_keeps_end_effector_poses(env: EmbodiedEnv) -> None:
    tools_of(env)["home"].call({})
    assert len(env.world.log.ee) > 10


def test_same_calls_give_bit_identical_physics() -> None:
    states = []
    for _ in range(2):
        e = cell()
        t = tools_of(e)
        t["pick"].call({"obj": "P1"})
        t["place"].call({"target": "fixture_A"})
        states.append(e.world.data.qpos.tobytes() + e.world.data.qvel.tobytes())
    assert states[0] == states[1]


def test_a_hallucinated_object_is_named_in_the_error(env: EmbodiedEnv) -> None:
    with pytest.raises(UserError, match="'P9'"):
        tools_of(env)["pick"].call({"obj": "P9"})


def test_an_unreachable_point_names_the_bad_coordinate(env: EmbodiedEnv) -> None:
    with pytest.raises(UserError, match=r"z=0\.2"):
        tools_of(env)["move_to"].call({"x": 1.3, "y": 0.7, "z": 0.2})


def test_placing_with_an_empty_gripper_is_refused(env: EmbodiedEnv) -> None:
    with pytest.raises(UserError, match="holds nothing"):
        tools_of(env)["place"].call({"target": "bin_red"})


def test_motion_after_stop_is_refused_until_home(env: EmbodiedEnv) -> None:
    t = tools_of(env)
    t["stop"].call({})
    with pytest.raises(UserError, match="stopped"):
        t["move_to"].call({"x": 1.3, "y": 0.7, "z": 0.6})


def test_inspect_reveals_the_hidden_defect(env: EmbodiedEnv) -> None:
    assert tools_of(env)["inspect"].call({"obj": "P2"})["defect"] == "crack"


def test_get_scene_hides_sizes_and_defects(env: EmbodiedEnv) -> None:
    part = tools_of(env)["get_scene"].call({})["parts"][0]
    assert "size" not in part and "defect" not in part


def test_a_bad_colour_in_the_layout_is_named() -> None:
    with pytest.raises(Exception, match="purple"):
        EmbodiedEnv(0, {"parts": [{"id": "P1", "colour": "purple", "size": "small", "x": 1.4, "y": 0.6}]})
