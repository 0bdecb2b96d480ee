"""Samples, collation and advantages: the prompt is masked, weights and advantages reach the loss coefficients."""

from __future__ import annotations

import pytest

from blacksoil.errors import UserError
from blacksoil.learning.samples import TrainSample, collate, group_advantages, sft_samples


def test_collate_masks_prompt_and_pads() -> None:
    a = TrainSample((1, 2, 3), (4, 5), weight=0.5)
    b = TrainSample((1,), (6,), weight=2.0)
    batch = collate([a, b], max_len=16, pad_id=0)
    assert batch["input_ids"].tolist() == [[1, 2, 3, 4, 5], [1, 6, 0, 0, 0]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1, 1, 1], [1, 1, 0, 0, 0]]
    assert batch["loss_mask"].tolist() == [[0, 0, 0, 1, 1], [0, 1, 0, 0, 0]]
    assert batch["coef"].tolist() == [0.5, 2.0]


def test_long_sample_loses_prompt_from_the_left() -> None:
    s = TrainSample(tuple(range(10, 20)), (7, 8, 9))
    batch = collate([s], max_len=5, pad_id=0)
    assert batch["input_ids"].tolist() == [[18, 19, 7, 8, 9]]
    assert batch["loss_mask"].tolist() == [[0, 0, 1, 1, 1]]


def test_group_advantages_are_relative_and_drop_flat_groups() -> None:
    samples = [TrainSample((1,), (2,), reward=1.0, group="t1"), TrainSample((1,), (3,), reward=0.0, group="t1"),
               TrainSample((1,), (4,), reward=1.0, group="t2"), TrainSample((1,), (5,), reward=1.0, group="t2")]
    out = group_advantages(samples)
    assert [s.completion_ids for s in out] == [(2,), (3,)]  # t2 has no spread: no signal
    assert out[0].advantage == pytest.approx(1.0, abs=1e-4)
    assert out[1].advantage == pytest.approx(-1.0, abs=1e-4)


def test_sft_keeps_successes_only() -> None:
    samples = [TrainSample((1,), (2,), reward=1.0), TrainSample((1,), (3,), reward=0.0)]
    assert [s.completion_ids for s in sft_samples(samples)] == [(2,)]


@pytest.mark.parametrize("weight", [-1.0, float("nan")])
def test_bad_importance_weight_is_rejected(weight: float) -> None:
    with pytest.raises(UserError, match="importance weight"):
        TrainSample((1,), (2,), weight=weight)


def test_empty_completion_is_rejected() -> None:
    with pytest.raises(UserError, match="completion token"):
        TrainSample((1,), ())
