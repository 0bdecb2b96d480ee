"""The labelled PII evaluation set: size, determinism, and the recall/precision targets."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from blacksoil.cli import app
from blacksoil.experience.anonymizer import Anonymizer
from blacksoil.experience.pii_dataset import DATASET_PATH, ENTITY_TYPES, generate
from blacksoil.experience.pii_eval import PRECISION_TARGET, RECALL_TARGET, evaluate, load_dataset


def test_dataset_is_checked_in_and_regenerates_identically() -> None:
    data = load_dataset()
    assert len(data) >= 200
    assert data == json.loads(json.dumps(generate()))
    assert DATASET_PATH.is_file()
    kinds = {ex["kind"] for ex in data}
    assert kinds == {"transcript", "tool_output", "negative"}
    assert sum(1 for ex in data if not ex["entities"]) >= 50, "needs tricky negatives"
    for ex in data:
        for e in ex["entities"]:
            assert ex["text"][e["start"] : e["end"]] == e["text"]
            assert e["type"] in ENTITY_TYPES


def test_targets_met(anonymizer: Anonymizer) -> None:
    res = evaluate(anonymizer)
    assert set(res.per_entity) >= set(ENTITY_TYPES)
    for name, score in res.per_entity.items():
        assert score.recall >= RECALL_TARGET, (name, score, [e for e in res.errors if e["type"] == name])
    assert res.micro().precision >= PRECISION_TARGET
    assert res.meets_targets()


def test_evaluation_counts_misses_and_false_positives(anonymizer: Anonymizer) -> None:
    examples = [
        {"id": "a", "text": "mail anna@gmail.com", "entities": [{"type": "EMAIL_ADDRESS", "start": 5, "end": 19}]},
        {"id": "b", "text": "nothing here", "entities": [{"type": "PHONE_NUMBER", "start": 0, "end": 7}]},
        {"id": "c", "text": "ip 10.1.2.3", "entities": []},
    ]
    res = evaluate(anonymizer, examples)
    assert res.per_entity["EMAIL_ADDRESS"].tp == 1
    assert res.per_entity["PHONE_NUMBER"].fn == 1 and res.per_entity["PHONE_NUMBER"].recall == 0.0
    assert res.per_entity["IP_ADDRESS"].fp == 1 and res.per_entity["IP_ADDRESS"].precision == 0.0
    assert not res.meets_targets()


def test_cli_prints_per_entity_table() -> None:
    result = CliRunner().invoke(app, ["experience", "pii-eval"])
    assert result.exit_code == 0, result.output
    for name in ENTITY_TYPES:
        assert name in result.output
    assert "targets" in result.output and "met" in result.output
