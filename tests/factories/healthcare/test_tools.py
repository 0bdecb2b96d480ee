"""The hospital tools on a real hospital: results, audit log, and errors that name the bad value."""

from __future__ import annotations

from typing import Any

import pytest

from blacksoil.errors import BlacksoilError
from blacksoil.factories.healthcare.env import HealthcareEnv

CENSUS = ["P013", "P017", "P082", "P096"]


def _env(**over: Any) -> HealthcareEnv:
    return HealthcareEnv(0, {"census": CENSUS, **over})


def _call(env: HealthcareEnv, tool: str, **args: Any) -> Any:
    return {t.name: t for t in env.tools()}[tool].call(args)


def test_patient_ids_are_limited_to_the_census() -> None:
    spec = {t.name: t for t in _env().tools()}["get_record"]
    assert spec.parameters["properties"]["patient_id"]["enum"] == CENSUS


def test_unknown_patient_is_rejected_by_the_schema() -> None:
    with pytest.raises(BlacksoilError, match="patient_id"):
        _call(_env(), "get_record", patient_id="P999", sections=["allergies"])


def test_reads_are_audited() -> None:
    env = _env()
    _call(env, "get_observations", patient_id="P013", loinc="8867-4")
    assert env.snapshot()["audit"][0]["action"] == "read"


def test_reads_are_not_writes() -> None:
    env = _env()
    _call(env, "get_record", patient_id="P013", sections=["demographics"])
    assert env.snapshot()["writes"] == 0


def test_each_call_advances_the_clock() -> None:
    env = _env()
    _call(env, "list_beds")
    assert env.snapshot()["clock"] == "2026-12-01T08:01"


def test_record_vitals_rejects_a_wrong_unit() -> None:
    with pytest.raises(BlacksoilError, match="unit='bpm'"):
        _call(_env(), "record_vitals", patient_id="P013", loinc="8867-4", value=80, unit="bpm",
              time="2026-12-01T07:30")


def test_record_vitals_rejects_a_future_time() -> None:
    with pytest.raises(BlacksoilError, match="future"):
        _call(_env(), "record_vitals", patient_id="P013", loinc="8867-4", value=80, unit="/min",
              time="2026-12-01T09:30")


def test_recorded_vital_is_a_write() -> None:
    env = _env()
    _call(env, "record_vitals", patient_id="P013", loinc="8867-4", value=80, unit="/min", time="2026-12-01T07:30")
    assert env.snapshot()["writes"] == 1


def test_interaction_is_found() -> None:
    result = _call(_env(), "check_med_safety", patient_id="P082", rxnorm="703")  # on warfarin and digoxin
    assert {i["with_drug"] for i in result["interactions"]} == {"warfarin", "digoxin"}


def test_unsafe_check_logs_an_alert() -> None:
    env = _env()
    _call(env, "check_med_safety", patient_id="P082", rxnorm="703")
    assert env.snapshot()["alerts"][0]["rxnorm"] == "703"


def test_low_egfr_flags_metformin() -> None:
    low = {"patient_id": "P096", "loinc": "33914-3", "value": 20.0, "unit": "mL/min/{1.73_m2}",
           "time": "2026-12-01T06:00", "source": "lab"}
    result = _call(_env(observations=[low]), "check_med_safety", patient_id="P096", rxnorm="6809")
    assert result["renal"]["action"] == "avoid"


def test_order_links_the_exact_approval() -> None:
    approval = {"id": "A-1", "patient_id": "P096", "rxnorm": "5224", "dose": 5000.0}
    order = _call(_env(approvals={"A-1": approval}), "place_med_order", patient_id="P096", rxnorm="5224",
                  dose=5000.0, unit="units", route="SC", frequency="q12h")
    assert order["approval_id"] == "A-1"


def test_other_dose_gets_no_approval() -> None:
    approval = {"id": "A-1", "patient_id": "P096", "rxnorm": "5224", "dose": 5000.0}
    order = _call(_env(approvals={"A-1": approval}), "place_med_order", patient_id="P096", rxnorm="5224",
                  dose=10000.0, unit="units", route="SC", frequency="q12h")
    assert order["approval_id"] is None


def test_order_rejects_the_wrong_unit() -> None:
    with pytest.raises(BlacksoilError, match="unit='mg'"):
        _call(_env(), "place_med_order", patient_id="P096", rxnorm="8591", dose=40.0, unit="mg", route="PO",
              frequency="once")


def test_referral_records_leaf_and_category() -> None:
    ref = _call(_env(), "create_referral", patient_id="P013", specialty="endocrinology", icd10="e119")
    assert (ref["icd10"], ref["icd10_leaf"], ref["icd10_category"]) == ("E11.9", True, "E11")


def test_category_code_is_not_a_leaf() -> None:
    ref = _call(_env(), "create_referral", patient_id="P013", specialty="endocrinology", icd10="E11")
    assert "warning" in ref


def test_invalid_icd10_names_the_value() -> None:
    with pytest.raises(BlacksoilError, match="icd10='XYZ'"):
        _call(_env(), "create_referral", patient_id="P013", specialty="endocrinology", icd10="XYZ")


def test_bed_rule_break_is_refused() -> None:
    env = _env(admissions={"P013": {"isolation": True, "telemetry": False}})
    with pytest.raises(BlacksoilError, match="isolation"):
        _call(env, "assign_bed", patient_id="P013", bed_id="B05")


def test_booked_slot_cannot_be_booked_twice() -> None:
    env = _env()
    _call(env, "book_appointment", patient_id="P013", slot_id="S01")
    with pytest.raises(BlacksoilError, match="S01 is already booked"):
        _call(env, "book_appointment", patient_id="P017", slot_id="S01")


def test_message_to_unknown_address_is_refused() -> None:
    with pytest.raises(BlacksoilError, match="to"):
        _call(_env(), "send_message", to="x@evil.example", text="hi")


def test_unknown_override_names_the_key() -> None:
    with pytest.raises(BlacksoilError, match=r"overrides\.wards"):
        HealthcareEnv(0, {"wards": {}})


def test_approval_request_rejects_the_wrong_unit() -> None:
    with pytest.raises(BlacksoilError, match="unit='mEq'"):
        _call(_env(), "request_approval", patient_id="P096", rxnorm="7052", dose=4.0, unit="mEq", route="IV",
              frequency="q6h", reason="pain")
