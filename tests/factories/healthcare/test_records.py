"""The shipped synthetic patients: provenance, R4B parsing, trimming (tests need no generator installed)."""

from __future__ import annotations

import gzip
import json

import pytest
from pydantic import ValidationError

from blacksoil.factories.healthcare import generate_patients, records


def test_population_size() -> None:
    assert len(records.population()) == 157


def test_generator_version_is_pinned_in_the_data() -> None:
    assert records.raw_document()["generator"]["version"] == generate_patients.GENERATOR_VERSION


def test_generator_seed_is_recorded() -> None:
    assert records.raw_document()["generator"]["seed"] == generate_patients.SEED


def test_bundles_parse_as_r4b() -> None:
    from fhir.resources.R4B.bundle import Bundle

    assert Bundle.model_validate(records.raw_document()["bundles"][0]).type == "collection"


def test_default_r5_namespace_rejects_the_bundles() -> None:
    from fhir.resources.bundle import Bundle

    with pytest.raises(ValidationError):
        Bundle.model_validate(records.raw_document()["bundles"][0])


def test_observations_stay_within_three_years() -> None:
    oldest = min(o.time for p in records.population().values() for o in p.observations)
    assert oldest >= "2023-12-01"


def test_patient_demographics_name_the_mrn() -> None:
    p = records.patient("P013")
    assert p.demographics()["mrn"] == p.mrn


def test_medications_resolve_to_formulary_ingredients() -> None:
    meds = records.patient("P082").medications
    assert "11289" in {i for m in meds for i in m["ingredients"]}  # warfarin


def _synthea_bundle(deceased: bool = False) -> dict:
    pat = {"resourceType": "Patient", "id": "x", "gender": "female", "birthDate": "1970-01-02",
           "identifier": [{"type": {"coding": [{"code": "MR"}]}, "value": "123"}],
           "name": [{"use": "official", "family": "Doe", "given": ["Jane"]}]}
    if deceased:
        pat["deceasedDateTime"] = "2020-01-01T00:00:00+00:00"
    obs = {"resourceType": "Observation", "category": [{"coding": [{"code": "vital-signs"}]}],
           "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4", "display": "Heart rate"}]},
           "effectiveDateTime": "2026-01-01T10:00:00+00:00", "valueQuantity": {"value": 70, "unit": "/min"}}
    old = {**obs, "effectiveDateTime": "2010-01-01T10:00:00+00:00"}
    return {"entry": [{"resource": r} for r in (pat, obs, obs, old)]}


def test_trim_drops_deceased_patients() -> None:
    assert generate_patients.trim(_synthea_bundle(deceased=True), "P001", "2023-12-01") is None


def test_trim_keeps_recent_observations_once() -> None:
    b = generate_patients.trim(_synthea_bundle(), "P001", "2023-12-01")
    assert b is not None and sum(e["resource"]["resourceType"] == "Observation" for e in b["entry"]) == 1


def test_trimmed_bundle_is_valid_fhir() -> None:
    b = generate_patients.trim(_synthea_bundle(), "P001", "2023-12-01")
    assert b is not None
    generate_patients.validate([b])


def test_shipped_file_is_gzipped_json() -> None:
    from importlib import resources

    raw = (resources.files("blacksoil.factories.healthcare") / "data" / "patients.json.gz").read_bytes()
    assert "bundles" in json.loads(gzip.decompress(raw))
