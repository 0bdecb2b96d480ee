"""Prefix-shared packing: calls of one trajectory share a row, and each call's loss is exactly its loss alone."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from blacksoil.learning.basemodel import BaseModelInfo
from blacksoil.learning.config import LearningConfig
from blacksoil.learning.objectives import sequence_nll
from blacksoil.learning.packing import collate_packed, pack
from blacksoil.learning.samples import TrainSample, collate
from blacksoil.learning.trainer import LoraTrainer


def _trajectory(tokenizer: Any) -> list[TrainSample]:
    """Three calls of one conversation, rendered like the gateway renders them: each prompt extends the last."""
    msgs: list[dict[str, str]] = [{"role": "system", "content": "You operate a factory."},
                                  {"role": "user", "content": "Is machine M3 running? Then close order O7."}]
    turns = [('{"name": "get_machine_status", "arguments": {"machine_id": "M3"}}', '{"state": "running"}'),
             ('{"name": "close_order", "arguments": {"order_id": "O7"}}', '{"closed": true}'),
             ('{"answer": "M3 is running; O7 is closed."}', None)]
    out = []
    for completion, result in turns:
        prompt = tokenizer.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
        ids = tokenizer(prompt, add_special_tokens=False).input_ids
        comp = tokenizer(completion + "<|im_end|>", add_special_tokens=False).input_ids
        out.append(TrainSample(tuple(ids), tuple(comp), weight=1.0, trajectory="s1"))
        if result is not None:
            msgs += [{"role": "assistant", "content": f"I call a tool: {completion}"},
                     {"role": "user", "content": f"The tool returned: {result}"}]
    return out


def test_calls_of_a_trajectory_share_one_row(tokenizer: Any) -> None:
    calls = _trajectory(tokenizer)
    other = TrainSample((1, 2, 3), (4, 5), trajectory="s2")
    rows, _ = pack([*calls, other], max_len=4096)
    assert sorted(sorted(r.members) for r in rows) == [[0, 1, 2], [3]]
    longest = max(len(c.prompt_ids) for c in calls)
    packed = collate_packed([*calls, other], 4096, pad_id=0)
    assert packed["rows"] == 2
    assert packed["tokens"] == longest + sum(len(c.completion_ids) for c in calls) + 3 + 2
    assert packed["tokens"] < sum(len(c.prompt_ids) + len(c.completion_ids) for c in calls)


def test_rows_respect_max_len_and_long_samples_keep_their_completion() -> None:
    a = TrainSample(tuple(range(10, 20)), (7, 8, 9))
    b = TrainSample(tuple(range(10, 15)), (6,))
    rows, fitted = pack([a, b], max_len=8)
    assert len(rows) == 2  # b's prompt is a prefix of a's, but a row of a + b would not fit in 8
    assert fitted[0].completion_ids == (7, 8, 9) and fitted[0].prompt_ids == tuple(range(15, 20))
    batch = collate_packed([a, b], 8, pad_id=0)
    assert batch["input_ids"].shape[1] <= 8


def test_packed_loss_equals_each_call_alone(base_info: BaseModelInfo, tokenizer: Any, tmp_path: Path) -> None:
    import torch

    calls = _trajectory(tokenizer)
    trainer = LoraTrainer(base_info, LearningConfig(max_seq_len=1024), tmp_path / "run")
    with torch.no_grad():
        alone = [float(sequence_nll(trainer.model, collate([c], 1024, trainer.pad_id))[0]) for c in calls]
        packed = sequence_nll(trainer.model, collate_packed(calls, 1024, trainer.pad_id)).tolist()
    assert packed == pytest.approx(alone, abs=2e-3)


def test_top_layers_only_train_the_top_layers(base_info: BaseModelInfo, tmp_path: Path) -> None:
    trainer = LoraTrainer(base_info, LearningConfig(lora_layers=6), tmp_path / "run")
    layers = {int(n.split("layers.")[1].split(".")[0]) for n in trainer.params}
    assert layers == set(range(24, 30))
    from blacksoil.errors import ConfigError

    with pytest.raises(ConfigError, match="lora_layers=31"):
        LoraTrainer(base_info, LearningConfig(lora_layers=31), tmp_path / "run2")
