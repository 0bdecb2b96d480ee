"""Checker predicates: each operator has a passing and a failing case; partial credit and makespan quality."""

from __future__ import annotations

from typing import Any

import pytest

from blacksoil.agentscore.checkers import check, check_one, count_matching
from blacksoil.agentscore.tasks import Predicate, Task

STATE: dict[str, Any] = {
    "machines": {"M1": {"id": "M1", "state": "down"}, "M2": {"id": "M2", "state": "running"}},
    "memory": {"x": 391.0, "s": "Hello"},
    "orders": [{"to": "purchasing", "text": "total 34 USD"}],
    "instance": {"best_known": 50}, "submitted": {"makespan": 55},
}


@pytest.mark.parametrize(("pred", "ok"), [
    ({"path": "machines.M1.state", "eq": "down"}, True),
    ({"path": "machines.M1.state", "eq": "running"}, False),
    ({"path": "machines.M1.state", "eq": "DOWN"}, True),
    ({"path": "machines.M9.state", "eq": "down"}, False),
    ({"path": "machines.M9.state", "ne": "down"}, False),
    ({"path": "memory.x", "eq": 391.004, "tol": 0.01}, True),
    ({"path": "memory.x", "eq": 391.1, "tol": 0.01}, False),
    ({"path": "memory.x", "ge": 391}, True),
    ({"path": "memory.x", "gt": 391}, False),
    ({"path": "memory.s", "ge": 1}, False),
    ({"path": "machines.M2.state", "in": ["idle", "running"]}, True),
    ({"path": "machines.M2.state", "not_in": ["idle", "running"]}, False),
    ({"path": "orders.0.to", "eq": "purchasing"}, True),
    ({"count": "machines", "where": {"state": "down"}, "eq": 1}, True),
    ({"count": "machines", "where": {"id": {"ne": "M1"}, "state": "down"}, "eq": 0}, True),
    ({"count": "machines", "where": {"id": {"in": ["M1", "M2"]}}, "eq": 2}, True),
    ({"count": "machines", "where": {"id": {"not_in": ["M1"]}}, "ge": 2}, False),
    ({"count": "orders", "where": {"text": {"contains": "34"}}, "ge": 1}, True),
    ({"count": "orders", "where": {"text": {"contains": "35"}}, "ge": 1}, False),
    ({"count": "nothing", "eq": 0}, True),
    ({"makespan_quality": 1.1}, True),
    ({"makespan_quality": 1.05}, False),
])
def test_state_predicates(pred: dict[str, Any], ok: bool) -> None:
    assert check_one(Predicate.model_validate(pred), STATE, "").passed is ok


@pytest.mark.parametrize(("pred", "answer", "ok"), [
    ({"answer_contains": "M5"}, "machine m5 is worst", True),
    ({"answer_contains": "M5"}, "machine M6 is worst", False),
    ({"answer_number": 1045.5, "tol": 0.01}, "It is 1,045.5 units.", True),
    ({"answer_number": 3}, "It is 13.", False),
    ({"answer_number": -4}, "minus: -4", True),
])
def test_answer_predicates(pred: dict[str, Any], answer: str, ok: bool) -> None:
    assert check_one(Predicate.model_validate(pred), {}, answer).passed is ok


def test_partial_credit_is_the_weighted_share_and_pass_needs_all() -> None:
    task = Task.model_validate({
        "id": "t", "split": "train", "category": "c", "instruction": "i", "tools": [],
        "oracle": [{"answer": "x"}],
        "checker": [{"path": "machines.M1.state", "eq": "down", "weight": 3},
                    {"path": "machines.M2.state", "eq": "down"}],
    })
    v = check(task, STATE, "")
    assert not v.passed and v.reward == pytest.approx(0.75)
    assert check(task, {"machines": {"M1": {"state": "down"}, "M2": {"state": "down"}}}, "").reward == 1.0


def test_guards_that_held_before_the_agent_acted_earn_no_credit() -> None:
    task = Task.model_validate({
        "id": "t", "split": "train", "category": "c", "instruction": "i", "tools": [],
        "oracle": [{"answer": "x"}],
        "checker": [{"count": "orders", "where": {"to": "maintenance"}, "ge": 1},
                    {"count": "orders", "where": {"to": {"ne": "maintenance"}}, "eq": 0},
                    {"answer_contains": "done"}],
    })
    before: dict[str, Any] = {"orders": []}
    assert check(task, before, "", before).reward == 0.0  # doing nothing: the guard alone earns nothing
    assert check(task, before, "").reward == pytest.approx(1 / 3)  # without the initial state: plain share
    right = {"orders": [{"to": "maintenance"}]}
    assert check(task, right, "", before).reward == pytest.approx(0.5)
    sprayed = {"orders": [{"to": "maintenance"}, {"to": "purchasing"}]}
    assert check(task, sprayed, "", before).reward == 0.0  # progress 1/2, but the one guard is broken
    assert check(task, right, "done", before).passed


def test_makespan_quality_gives_best_over_made_as_credit() -> None:
    r = check_one(Predicate.model_validate({"makespan_quality": 1.0}), STATE, "")
    assert not r.passed and r.credit == pytest.approx(50 / 55)
    assert check_one(Predicate.model_validate({"makespan_quality": 1.0}), {"instance": {"best_known": 50},
                                                                            "submitted": None}, "").credit == 0.0


def test_count_over_list_and_dict_collections() -> None:
    assert count_matching(STATE, "orders", {}) == 1
    assert count_matching(STATE, "machines", {"state": "running"}) == 1
