"""CP-SAT job shop on classic instances, dispatching rules and the feasibility checker."""

from __future__ import annotations

import copy

import pytest

from blacksoil.errors import NotFoundError, UserError
from blacksoil.factories.manufacturing import jobshop


def test_cp_sat_reaches_the_ft06_optimum_quickly() -> None:
    inst = jobshop.classic("ft06")
    s = jobshop.solve(inst, 5.0, workers=2)
    assert s.makespan == inst.best_known == 55 and s.status == "optimal"
    assert jobshop.validate(inst, s.starts) == 55


def test_tiny_time_limit_still_returns_a_feasible_schedule() -> None:
    inst = jobshop.classic("la01")
    s = jobshop.solve(inst, 0.2, workers=1)
    assert jobshop.validate(inst, s.starts) == s.makespan >= inst.best_known  # type: ignore[operator]


@pytest.mark.parametrize("rule", jobshop.RULES)
def test_dispatch_rules_are_feasible_and_not_better_than_optimal(rule: str) -> None:
    inst = jobshop.classic("ft06")
    s = jobshop.dispatch(inst, rule)
    assert s.makespan >= 55


def test_validate_rejects_overlap_precedence_and_shape() -> None:
    inst = jobshop.classic("ft06")
    good = jobshop.solve(inst, 5.0).starts
    two = jobshop.Instance("two", [[3, 2], [4, 1]], [[0, 1], [0, 1]])
    assert jobshop.validate(two, [[0, 3], [3, 7]]) == 8
    with pytest.raises(UserError, match="machine 0"):
        jobshop.validate(two, [[0, 3], [2, 7]])
    early = copy.deepcopy(good)
    early[1][1] = early[1][0]
    with pytest.raises(UserError, match=r"starts\[1\]\[1\]"):
        jobshop.validate(inst, early)
    with pytest.raises(UserError, match="one row per job"):
        jobshop.validate(inst, good[:-1])
    with pytest.raises(UserError, match=r"starts\[0\]"):
        jobshop.validate(inst, [[-1] * 6, *good[1:]])


def test_unknown_instance_and_bad_inputs_are_clear() -> None:
    with pytest.raises(NotFoundError, match="ft06"):
        jobshop.classic("nope")
    with pytest.raises(UserError, match="rule"):
        jobshop.dispatch(jobshop.classic("ft06"), "RANDOM")
    with pytest.raises(UserError, match="time_limit_s"):
        jobshop.solve(jobshop.classic("ft06"), 0)


def test_instance_view_for_agents_round_trips() -> None:
    inst = jobshop.classic("ft06")
    view = inst.to_dict()
    assert view["machines"] == 6 and len(view["jobs"]) == 6
    assert [[op[0] for op in job] for job in view["jobs"]] == inst.machines
    assert [[op[1] for op in job] for job in view["jobs"]] == inst.durations
