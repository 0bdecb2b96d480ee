"""Precision and recall of the anonymizer per entity type on the labelled PII evaluation set.

A prediction is a true positive when it overlaps a gold span of the same type; leaks count gold
characters left un-anonymized by any prediction.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from blacksoil.experience.anonymizer import Anonymizer
from blacksoil.experience.pii_dataset import DATASET_PATH

RECALL_TARGET = 0.95
PRECISION_TARGET = 0.90


@dataclass
class EntityScore:
    """Counts for one entity type."""

    tp: int = 0
    fp: int = 0
    fn: int = 0

    @property
    def precision(self) -> float:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else 1.0

    @property
    def recall(self) -> float:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else 1.0


@dataclass
class EvalResult:
    """Per-entity scores, micro averages and the examples that went wrong."""

    per_entity: dict[str, EntityScore]
    n_examples: int
    errors: list[dict[str, Any]] = field(default_factory=list)

    def micro(self) -> EntityScore:
        s = EntityScore()
        for e in self.per_entity.values():
            s.tp, s.fp, s.fn = s.tp + e.tp, s.fp + e.fp, s.fn + e.fn
        return s

    def meets_targets(self) -> bool:
        micro = self.micro()
        return all(e.recall >= RECALL_TARGET for e in self.per_entity.values()) and micro.precision >= PRECISION_TARGET


def load_dataset() -> list[dict[str, Any]]:
    """The checked-in evaluation set (package data)."""
    data: list[dict[str, Any]] = json.loads(DATASET_PATH.read_text())
    return data


def evaluate(anonymizer: Anonymizer | None = None, examples: list[dict[str, Any]] | None = None) -> EvalResult:
    """Run the anonymizer's detector over every example and score it against the labels."""
    anonymizer = anonymizer or Anonymizer()
    examples = examples if examples is not None else load_dataset()
    scores: dict[str, EntityScore] = {}
    errors: list[dict[str, Any]] = []
    for ex in examples:
        preds = [(r.entity_type, r.start, r.end) for r in anonymizer.find(ex["text"])]
        gold = [(g["type"], g["start"], g["end"]) for g in ex["entities"]]
        matched_gold: set[int] = set()
        for ptype, ps, pe in preds:
            hit = next((i for i, (gt, gs, ge) in enumerate(gold)
                        if gt == ptype and ps < ge and gs < pe and i not in matched_gold), None)
            score = scores.setdefault(ptype, EntityScore())
            if hit is None:
                score.fp += 1
                errors.append({"id": ex["id"], "error": "false_positive", "type": ptype, "text": ex["text"][ps:pe]})
            else:
                score.tp += 1
                matched_gold.add(hit)
        for i, (gt, gs, ge) in enumerate(gold):
            if i not in matched_gold:
                scores.setdefault(gt, EntityScore()).fn += 1
                errors.append({"id": ex["id"], "error": "missed", "type": gt, "text": ex["text"][gs:ge]})
    return EvalResult(per_entity=dict(sorted(scores.items())), n_examples=len(examples), errors=errors)
