"""The rule-based Emergency Severity Index (ESI v4, simplified) that triage tasks are checked against.

Why rules: ESI is a published five-level algorithm (decision points A-D: life-saving intervention, high-risk
situation / confusion / severe pain, resources needed, danger-zone vitals); a deterministic version gives every
arrival one reference level. Adult danger-zone vitals only; synthetic and simplified, not for clinical use.
"""

from __future__ import annotations

import random
from typing import Any

#: Chief complaints that are high-risk situations by themselves (ESI decision point B).
HIGH_RISK = frozenset({"chest pain", "stroke symptoms", "suicidal ideation", "anaphylaxis", "GI bleed"})
#: Complaints with the resources a triage nurse would expect them to need (ESI decision point C).
COMPLAINTS: dict[str, int] = {
    "chest pain": 3, "stroke symptoms": 3, "suicidal ideation": 1, "anaphylaxis": 2, "GI bleed": 3,
    "abdominal pain": 2, "shortness of breath": 2, "fever and cough": 2, "fall with hip pain": 2,
    "ankle sprain": 1, "laceration": 1, "urinary symptoms": 1, "sore throat": 0, "medication refill": 0,
    "rash": 0,
}


def reference_esi(arrival: dict[str, Any]) -> int:
    """ESI level 1 (most urgent) to 5 for one arrival: complaint, vitals, mental status, pain, resources."""
    v = arrival["vitals"]
    if (arrival["mental"] == "unresponsive" or v["spo2"] < 85 or v["sbp"] < 80 or v["rr"] < 8 or v["rr"] > 35
            or v["hr"] < 40 or v["hr"] > 150):
        return 1
    if arrival["complaint"] in HIGH_RISK or arrival["mental"] == "confused" or arrival["pain"] >= 8:
        return 2
    resources = arrival["expected_resources"]
    if resources >= 2:
        danger = v["hr"] > 100 or v["rr"] > 20 or v["spo2"] < 92 or v["temp_c"] >= 39.0
        return 2 if danger else 3
    return 4 if resources == 1 else 5


def allowed_levels(esi: int) -> list[int]:
    """What the checker accepts: the exact level for ESI 1-2, within ±1 (never 1-2 by drift) for ESI 3-5."""
    if esi <= 2:
        return [esi]
    return [e for e in (esi - 1, esi, esi + 1) if 2 <= e <= 5]


def make_arrival(rng: random.Random, level: int, arrived: str) -> dict[str, Any]:
    """A synthetic ED arrival whose reference ESI is `level` (sampled, then checked)."""
    for _ in range(1000):
        complaint = rng.choice(sorted(COMPLAINTS))
        vitals = {"hr": rng.randint(55, 125), "sbp": rng.randint(95, 170), "rr": rng.randint(12, 24),
                  "spo2": rng.randint(90, 100), "temp_c": round(rng.uniform(36.4, 39.4), 1)}
        mental = "alert"
        if level == 1:
            choice = rng.choice(["unresponsive", "spo2", "sbp"])
            mental = "unresponsive" if choice == "unresponsive" else "alert"
            vitals["spo2"] = rng.randint(78, 84) if choice == "spo2" else vitals["spo2"]
            vitals["sbp"] = rng.randint(60, 78) if choice == "sbp" else vitals["sbp"]
        elif level == 2 and rng.random() < 0.3:
            mental = "confused"
        arrival = {"complaint": complaint, "arrived": arrived, "vitals": vitals, "mental": mental,
                   "pain": rng.randint(0, 9), "expected_resources": COMPLAINTS[complaint], "esi": None}
        if reference_esi(arrival) == level:
            return arrival
    raise RuntimeError(f"could not sample an arrival of ESI level {level}")
