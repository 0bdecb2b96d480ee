"""The read-only FHIR store: the shipped synthetic patients, parsed once with the R4B models and indexed for the tools.

Why R4B: the bundles are FHIR R4 (Synthea's export); `fhir.resources`' default namespace is R5, which rejects them.
Why read-only: tasks share one parsed population; what an agent writes (vitals, orders) lives in the per-task
hospital state (hospital.py), so every task starts from the same records and the checker reads only the changes.
Synthetic data (Synthea): not for clinical use.
"""

from __future__ import annotations

import datetime as dt
import gzip
import json
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from typing import Any

from . import drugs

#: Vital signs and labs the tools know, LOINC -> (name, UCUM unit). Units are what record_vitals accepts.
LOINC: dict[str, tuple[str, str]] = {
    "8867-4": ("heart rate", "/min"), "8480-6": ("systolic blood pressure", "mm[Hg]"),
    "8462-4": ("diastolic blood pressure", "mm[Hg]"), "9279-1": ("respiratory rate", "/min"),
    "2708-6": ("oxygen saturation", "%"), "8310-5": ("body temperature", "Cel"), "29463-7": ("body weight", "kg"),
    "8302-2": ("body height", "cm"), "72514-3": ("pain severity 0-10", "{score}"),
    "6298-4": ("potassium", "mmol/L"), "2947-0": ("sodium", "mmol/L"), "2160-0": ("creatinine", "mg/dL"),
    "38483-4": ("creatinine", "mg/dL"), "33914-3": ("eGFR", "mL/min/{1.73_m2}"), "2339-0": ("glucose", "mg/dL"),
    "4548-4": ("hemoglobin A1c", "%"), "718-7": ("hemoglobin", "g/dL"), "777-3": ("platelets", "10*3/uL"),
    "6690-2": ("leukocytes", "10*3/uL"), "6299-2": ("urea nitrogen", "mg/dL"), "49765-1": ("calcium", "mg/dL"),
    "2093-3": ("total cholesterol", "mg/dL"), "18262-6": ("LDL cholesterol", "mg/dL"),
}
VITALS = ("8867-4", "8480-6", "8462-4", "9279-1", "2708-6", "8310-5", "29463-7", "72514-3")
EGFR = "33914-3"
REFERENCE_DATE = dt.date(2026, 12, 1)


@dataclass(frozen=True)
class Observation:
    """One numeric result: LOINC, value, unit and time (YYYY-MM-DDTHH:MM, UTC)."""

    loinc: str
    value: float
    unit: str
    time: str


@dataclass
class PatientRecord:
    """What the tools read about one patient, extracted from its FHIR bundle."""

    id: str
    mrn: str
    given: str
    family: str
    birth_date: str
    sex: str
    conditions: list[dict[str, str]] = field(default_factory=list)
    medications: list[dict[str, Any]] = field(default_factory=list)
    allergies: list[dict[str, Any]] = field(default_factory=list)
    observations: list[Observation] = field(default_factory=list)

    @property
    def name(self) -> str:
        """Given and family name."""
        return f"{self.given} {self.family}"

    def age(self, on: dt.date = REFERENCE_DATE) -> int:
        """Age in whole years on a date."""
        b = dt.date.fromisoformat(self.birth_date)
        return on.year - b.year - ((on.month, on.day) < (b.month, b.day))

    def demographics(self) -> dict[str, Any]:
        """The identifying part of the record (PHI: name, birth date, MRN)."""
        return {"patient_id": self.id, "mrn": self.mrn, "name": self.name, "birth_date": self.birth_date,
                "sex": self.sex, "age": self.age()}


def _code(cc: Any) -> tuple[str, str, str]:
    c = cc.coding[0]
    return str(c.system or ""), str(c.code), str(c.display or "")


def _record(bundle: dict[str, Any]) -> PatientRecord:
    """One bundle, validated by the R4B models, as a PatientRecord."""
    from fhir.resources.R4B.bundle import Bundle

    parsed = Bundle.model_validate(bundle)
    res: list[Any] = [e.resource for e in parsed.entry or []]
    (pat,) = [r for r in res if r.get_resource_type() == "Patient"]
    name = pat.name[0]
    rec = PatientRecord(id=str(pat.id), mrn=str(pat.identifier[0].value), given=str(name.given[0]),
                        family=str(name.family), birth_date=pat.birthDate.isoformat(), sex=str(pat.gender))
    for r in res:
        kind = r.get_resource_type()
        if kind == "Condition":
            system, code, display = _code(r.code)
            rec.conditions.append({"snomed": code, "display": display, "onset": str(r.onsetDateTime or "")[:10]})
        elif kind == "MedicationRequest":
            system, code, display = _code(r.medicationCodeableConcept)
            rec.medications.append({"rxnorm": code, "display": display, "ingredients": drugs.ingredients_of(display)})
        elif kind == "AllergyIntolerance":
            system, code, display = _code(r.code)
            rxnorm = "rxnorm" in system
            found = drugs.ingredients_of(display) if rxnorm else []
            rec.allergies.append({"code": code, "system": "rxnorm" if rxnorm else "snomed", "display": display,
                                  "category": ",".join(r.category or []),
                                  "ingredients": sorted({*found, *([code] if code in drugs.FORMULARY else [])})})
        elif kind == "Observation":
            _, code, _ = _code(r.code)
            q = r.valueQuantity
            when = r.effectiveDateTime.strftime("%Y-%m-%dT%H:%M")
            rec.observations.append(Observation(code, float(q.value), str(q.unit or ""), when))
    return rec


def raw_document() -> dict[str, Any]:
    """The shipped file as JSON: generator provenance and the trimmed bundles."""
    path = resources.files("blacksoil.factories.healthcare") / "data" / "patients.json.gz"
    doc: dict[str, Any] = json.loads(gzip.decompress(path.read_bytes()))
    return doc


@lru_cache(maxsize=1)
def population() -> dict[str, PatientRecord]:
    """Every shipped patient by id (P001 …), parsed once per process."""
    return {r.id: r for r in (_record(b) for b in raw_document()["bundles"])}


def patient(pid: str) -> PatientRecord:
    """One patient of the population."""
    return population()[pid]
