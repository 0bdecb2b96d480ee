"""The clipped policy-gradient objective on the real model: at ratio 1 it is the plain policy gradient, a ratio
past the clip stops the push, and the KL to the base (the adapter switched off) grows only once the adapter moves.
SFT anchored to the base is plain SFT until the adapter moves, and then its KL term pulls back toward the base."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from blacksoil.learning.basemodel import BaseModelInfo
from blacksoil.learning.config import LearningConfig
from blacksoil.learning.objectives import anchored_loss, clipped_policy_loss, token_nll, weighted_loss
from blacksoil.learning.packing import collate_packed
from blacksoil.learning.samples import TrainSample
from blacksoil.learning.trainer import LoraTrainer

CFG = LearningConfig(batch_size=2, max_seq_len=64, learning_rate=1e-3, checkpoint_every=10, torch_threads=1,
                     lora_layers=2)


@pytest.fixture
def samples(make_sample: Callable[..., TrainSample]) -> list[TrainSample]:
    return [make_sample("What is the secret word?", "zebracorn42", advantage=1.0),
            make_sample("What is the secret word?", "I do not know.", advantage=-1.0)]


def _grads(trainer: LoraTrainer, loss: Any) -> list[Any]:
    trainer.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    return [p.grad.clone() for p in trainer.params.values() if p.grad is not None]


def _with_current_logprobs(trainer: LoraTrainer, samples: list[TrainSample]) -> list[TrainSample]:
    """The samples with behaviour log-probabilities equal to the current policy's (ratio exactly 1)."""
    import torch

    out = []
    for s in samples:
        batch = collate_packed([s], CFG.max_seq_len, trainer.pad_id)
        with torch.no_grad():
            nll, _, _ = token_nll(trainer.model, batch)
        out.append(replace(s, behaviour_logprobs=tuple(float(-x) for x in nll)))
    return out


def test_at_ratio_one_it_is_the_policy_gradient(base_info: BaseModelInfo, tmp_path: Path,
                                                samples: list[TrainSample]) -> None:
    import torch

    trainer = LoraTrainer(base_info, CFG, tmp_path / "run")
    batch = collate_packed(_with_current_logprobs(trainer, samples), CFG.max_seq_len, trainer.pad_id)
    pg = _grads(trainer, clipped_policy_loss(trainer.model, trainer.model.disable_adapter, batch, 0.2, 0.05)[0])
    ll = _grads(trainer, weighted_loss(trainer.model, batch)[0])
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(pg, ll, strict=True))


def test_a_ratio_past_the_clip_stops_the_push(base_info: BaseModelInfo, tmp_path: Path,
                                              samples: list[TrainSample]) -> None:
    trainer = LoraTrainer(base_info, CFG, tmp_path / "run")
    good = _with_current_logprobs(trainer, samples[:1])[0]
    # The behaviour policy found these tokens far less likely than now: the ratio is e ≈ 2.7 > 1.2.
    raised = replace(good, behaviour_logprobs=tuple(x - 1.0 for x in good.behaviour_logprobs or ()))
    batch = collate_packed([raised], CFG.max_seq_len, trainer.pad_id)
    grads = _grads(trainer, clipped_policy_loss(trainer.model, trainer.model.disable_adapter, batch, 0.2, 0.0)[0])
    assert max(float(g.abs().max()) for g in grads) == 0.0


def test_the_kl_to_the_base_is_zero_before_training(base_info: BaseModelInfo, tmp_path: Path,
                                                    samples: list[TrainSample]) -> None:
    trainer = LoraTrainer(base_info, CFG, tmp_path / "run")
    batch = collate_packed(samples, CFG.max_seq_len, trainer.pad_id)
    _, stats, _ = clipped_policy_loss(trainer.model, trainer.model.disable_adapter, batch, 0.2, 0.05)
    assert stats["kl"] == pytest.approx(0.0, abs=1e-6)


def test_the_kl_to_the_base_grows_as_the_adapter_moves(base_info: BaseModelInfo, tmp_path: Path,
                                                       samples: list[TrainSample]) -> None:
    trainer = LoraTrainer(base_info, CFG.model_copy(update={"objective": "grpo"}), tmp_path / "run")
    trainer.train(samples, 3)
    batch = collate_packed(samples, CFG.max_seq_len, trainer.pad_id)
    _, stats, _ = clipped_policy_loss(trainer.model, trainer.model.disable_adapter, batch, 0.2, 0.05)
    assert stats["kl"] > 1e-4


def test_behaviour_logprobs_must_match_the_completion() -> None:
    from blacksoil.errors import UserError

    with pytest.raises(UserError, match="one per token"):
        TrainSample((1, 2), (3, 4), behaviour_logprobs=(-0.1,))


def test_anchored_sft_is_plain_sft_before_training(base_info: BaseModelInfo, tmp_path: Path,
                                                   samples: list[TrainSample]) -> None:
    import torch

    trainer = LoraTrainer(base_info, CFG, tmp_path / "run")
    batch = collate_packed(samples[:1], CFG.max_seq_len, trainer.pad_id)
    anchored = _grads(trainer, anchored_loss(trainer.model, trainer.model.disable_adapter, batch, 1.0)[0])
    plain = _grads(trainer, weighted_loss(trainer.model, batch)[0])
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(anchored, plain, strict=True))


def test_anchored_sft_reports_the_kl_once_the_adapter_moved(base_info: BaseModelInfo, tmp_path: Path,
                                                            samples: list[TrainSample]) -> None:
    trainer = LoraTrainer(base_info, CFG, tmp_path / "run")
    trainer.train(samples[:1], 3)
    batch = collate_packed(samples[:1], CFG.max_seq_len, trainer.pad_id)
    _, stats, _ = anchored_loss(trainer.model, trainer.model.disable_adapter, batch, 1.0)
    assert stats["kl"] > 1e-4


def test_the_anchor_holds_the_adapter_nearer_the_base(base_info: BaseModelInfo, tmp_path: Path,
                                                      samples: list[TrainSample]) -> None:
    batch_of = lambda t: collate_packed(samples[:1], CFG.max_seq_len, t.pad_id)  # noqa: E731
    free = LoraTrainer(base_info, CFG, tmp_path / "free")
    free.train(samples[:1], 4)
    held = LoraTrainer(base_info, CFG.model_copy(update={"sft_kl_coef": 5.0}), tmp_path / "held")
    held.train(samples[:1], 4)
    kl = [anchored_loss(t.model, t.model.disable_adapter, batch_of(t), 1.0)[1]["kl"] for t in (free, held)]
    assert kl[1] < kl[0]
