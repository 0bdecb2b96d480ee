"""Bed placement rules and the CP-SAT optimum; the rule-based ESI reference."""

from __future__ import annotations

import random

from blacksoil.factories.healthcare import beds, triage

SEX = {"P1": "male", "P2": "female", "P3": "male", "P9": "female"}.__getitem__


def _ward() -> dict:
    b = beds.default_beds()
    b["B03"]["patient_id"] = "P9"  # a woman in room R3
    return b


def test_isolation_patient_needs_an_isolation_room() -> None:
    assert "isolation" in (beds.rule_broken(_ward(), "B05", "P1", {"isolation": True}, SEX) or "")


def test_room_holds_one_sex() -> None:
    assert "female" in (beds.rule_broken(_ward(), "B04", "P1", {}, SEX) or "")


def test_optimum_respects_every_rule() -> None:
    adm = {"P1": {"telemetry": True}, "P2": {"isolation": True}, "P3": {}}
    plan = beds.solve(_ward(), adm, SEX)
    assert plan is not None and all(beds.rule_broken(_ward(), b, p, adm[p], SEX) is None for p, b in plan.items())


def test_optimal_plan_scores_ratio_one() -> None:
    adm = {"P1": {"telemetry": True}, "P2": {"isolation": True}, "P3": {}}
    ward = _ward()
    for p, b in (beds.solve(ward, adm, SEX) or {}).items():
        ward[b]["patient_id"] = p
    assert beds.bed_plan(ward, adm, SEX)["ratio"] == 1.0


def test_worse_plan_scores_above_one() -> None:
    adm = {"P3": {}}
    ward = _ward()
    ward["B10"]["patient_id"] = "P3"
    assert beds.bed_plan(ward, adm, SEX)["ratio"] > 1.0


def test_unplaced_admission_counts() -> None:
    assert beds.bed_plan(_ward(), {"P3": {}}, SEX)["unassigned"] == 1


def _arrival(**kw: object) -> dict:
    base = {"complaint": "sore throat", "vitals": {"hr": 80, "sbp": 120, "rr": 16, "spo2": 98, "temp_c": 37.0},
            "mental": "alert", "pain": 2, "expected_resources": 0}
    return {**base, **kw}


def test_unresponsive_is_esi_1() -> None:
    assert triage.reference_esi(_arrival(mental="unresponsive")) == 1


def test_chest_pain_is_esi_2() -> None:
    assert triage.reference_esi(_arrival(complaint="chest pain", expected_resources=3)) == 2


def test_no_resources_is_esi_5() -> None:
    assert triage.reference_esi(_arrival()) == 5


def test_danger_zone_vitals_raise_esi_3_to_2() -> None:
    vit = {"hr": 120, "sbp": 120, "rr": 16, "spo2": 98, "temp_c": 37.0}
    assert triage.reference_esi(_arrival(vitals=vit, expected_resources=2)) == 2


def test_esi_2_must_be_exact() -> None:
    assert triage.allowed_levels(2) == [2]


def test_esi_4_allows_one_level_either_way() -> None:
    assert triage.allowed_levels(4) == [3, 4, 5]


def test_sampled_arrival_has_the_requested_level() -> None:
    rng = random.Random(3)
    assert all(triage.reference_esi(triage.make_arrival(rng, lv, "t")) == lv for lv in (1, 2, 3, 4, 5))
