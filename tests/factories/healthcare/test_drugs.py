"""The formulary tables: interaction pairs with sources, allergy classes, renal rules."""

from __future__ import annotations

import pytest

from blacksoil.errors import NotFoundError
from blacksoil.factories.healthcare import drugs


def test_interaction_table_size() -> None:
    assert 30 <= len(drugs.INTERACTIONS) <= 50


def test_every_interaction_cites_a_source() -> None:
    assert all(i.source.strip() for i in drugs.INTERACTIONS)


def test_interaction_codes_are_in_the_formulary() -> None:
    assert all(i.a in drugs.FORMULARY and i.b in drugs.FORMULARY for i in drugs.INTERACTIONS)


def test_interaction_pairs_are_unique() -> None:
    assert len({frozenset((i.a, i.b)) for i in drugs.INTERACTIONS}) == len(drugs.INTERACTIONS)


def test_interactions_are_found_from_either_side() -> None:
    assert [i.b for i in drugs.interactions_with("1191", ["11289"])] == ["1191"]  # aspirin vs warfarin


def test_combination_product_has_two_ingredients() -> None:
    assert drugs.ingredients_of("Acetaminophen 325 MG / Oxycodone Hydrochloride 10 MG Oral Tablet") == ["161", "7804"]


def test_potassium_salt_is_not_potassium_chloride() -> None:
    assert drugs.ingredients_of("Penicillin V Potassium 500 MG Oral Tablet") == ["7984"]


def test_penicillin_allergy_rules_out_amoxicillin() -> None:
    assert drugs.allergy_conflicts("723", ["7984"]) == ["7984"]


def test_aspirin_allergy_does_not_rule_out_ibuprofen() -> None:
    assert drugs.allergy_conflicts("5640", ["1191"]) == []


def test_metformin_is_avoided_below_egfr_30() -> None:
    issue = drugs.renal_issue("6809", 25.0)
    assert issue is not None and issue["action"] == "avoid"


def test_no_renal_issue_without_an_egfr() -> None:
    assert drugs.renal_issue("6809", None) is None


def test_unknown_code_names_the_value() -> None:
    with pytest.raises(NotFoundError, match="rxnorm='999'"):
        drugs.drug("999")


def test_high_alert_classes() -> None:
    classes = {d.drug_class for d in drugs.FORMULARY.values() if d.high_alert}
    assert classes == {"opioid", "anticoagulant", "insulin"}
