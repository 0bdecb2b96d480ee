"""The LoRA trainer on the real base model: it learns, the group objective pushes failures down, a killed
trainer resumes to the same weights, and two gloo DDP ranks (with a pluggable comm hook) stay in sync."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from blacksoil.errors import ConfigError
from blacksoil.learning.basemodel import BaseModelInfo
from blacksoil.learning.config import LearningConfig
from blacksoil.learning.objectives import sequence_nll
from blacksoil.learning.samples import TrainSample, collate, group_advantages
from blacksoil.learning.trainer import OPTIMIZER_FILE, LoraTrainer, write_samples


def _nll(trainer: LoraTrainer, samples: list[TrainSample]) -> list[float]:
    import torch

    with torch.no_grad():
        return sequence_nll(trainer.model, collate(samples, 64, trainer.pad_id)).tolist()


def test_sft_lowers_loss_and_checkpoints(base_info: BaseModelInfo, tiny_cfg: LearningConfig, tmp_path: Path,
                                         secret_samples: list[TrainSample]) -> None:
    trainer = LoraTrainer(base_info, tiny_cfg, tmp_path / "run")
    assert 1_500_000 < trainer.trainable_parameters < 2_000_000  # r=16 on q,k,v,o of the 135M model
    before = _nll(trainer, secret_samples)
    res = trainer.train(secret_samples, 4)
    after = _nll(trainer, secret_samples)
    assert res.steps == 4 and res.resumed_from is None
    assert all(a < b - 1.0 for a, b in zip(after, before, strict=True)), (before, after)
    assert trainer.checkpoints.latest() is not None and trainer.checkpoints.latest().step == 4  # type: ignore[union-attr]
    out = trainer.save_adapter(tmp_path / "adapter")
    assert (out / "adapter_model.safetensors").exists()


def _max_diff(a: LoraTrainer, b: LoraTrainer) -> float:
    return max(float((a.params[n] - b.params[n]).detach().abs().max()) for n in a.params)


@pytest.fixture(scope="module")
def split_training(base_info: BaseModelInfo, tmp_path_factory: pytest.TempPathFactory,
                   secret_samples: list[TrainSample]) -> dict[str, LoraTrainer]:
    """4 steps in one go; 2 steps, the adapter saved, 2 more from it (its optimizer continued, then restarted).
    One batch holds both samples, so every step sees the same data and only the optimizer's state differs."""
    tmp = tmp_path_factory.mktemp("split")
    tiny_cfg = LearningConfig(batch_size=2, max_seq_len=48, checkpoint_every=2, learning_rate=1e-3, torch_threads=1,
                              lora_layers=0)
    whole = LoraTrainer(base_info, tiny_cfg, tmp / "whole")
    whole.train(secret_samples, 4)
    first = LoraTrainer(base_info, tiny_cfg, tmp / "first")
    first.train(secret_samples, 2)
    first.save_adapter(tmp / "adapter")
    continued = LoraTrainer(base_info, tiny_cfg, tmp / "continued", init_adapter=tmp / "adapter")
    continued.train(secret_samples, 2)
    (tmp / "adapter" / OPTIMIZER_FILE).unlink()
    restarted = LoraTrainer(base_info, tiny_cfg, tmp / "restarted", init_adapter=tmp / "adapter")
    restarted.train(secret_samples, 2)
    return {"whole": whole, "continued": continued, "restarted": restarted}


def test_trainer_from_a_saved_adapter_continues_its_optimizer(split_training: dict[str, LoraTrainer]) -> None:
    assert split_training["continued"].continued_optimizer


def test_continued_training_matches_training_in_one_go(split_training: dict[str, LoraTrainer]) -> None:
    assert _max_diff(split_training["continued"], split_training["whole"]) < 1e-4


def test_a_restarted_optimizer_lands_elsewhere(split_training: dict[str, LoraTrainer]) -> None:
    assert not split_training["restarted"].continued_optimizer
    assert _max_diff(split_training["restarted"], split_training["whole"]) > 1e-3


def test_optimizer_of_other_parameters_is_a_clear_error(base_info: BaseModelInfo, tiny_cfg: LearningConfig,
                                                        tmp_path: Path, secret_samples: list[TrainSample]) -> None:
    import torch

    first = LoraTrainer(base_info, tiny_cfg, tmp_path / "first")
    first.train(secret_samples, 1)
    first.save_adapter(tmp_path / "adapter")
    saved = torch.load(tmp_path / "adapter" / OPTIMIZER_FILE, weights_only=True)
    torch.save({**saved, "names": saved["names"][:-1]}, tmp_path / "adapter" / OPTIMIZER_FILE)
    with pytest.raises(ConfigError, match="delete that file to start a fresh optimizer"):
        LoraTrainer(base_info, tiny_cfg, tmp_path / "second", init_adapter=tmp_path / "adapter")


def test_group_objective_pushes_failed_attempt_down(base_info: BaseModelInfo, tmp_path: Path,
                                                    make_sample: Callable[..., TrainSample]) -> None:
    good = make_sample("What is 2+2?", "4", reward=1.0, group="add")
    bad = make_sample("What is 2+2?", "Five, I think.", reward=0.0, group="add")
    cfg = LearningConfig(batch_size=2, max_seq_len=48, learning_rate=1e-3, objective="grpo", checkpoint_every=10)
    trainer = LoraTrainer(base_info, cfg, tmp_path / "run")
    before = _nll(trainer, [good, bad])
    trainer.train(group_advantages([good, bad]), 3)
    after = _nll(trainer, [good, bad])
    assert after[0] < before[0], "the successful attempt should become more likely"
    assert after[1] > before[1], "the failed attempt should become less likely"


def _trainer_cmd(run_dir: Path, samples: Path, steps: int, out: Path) -> list[str]:
    cfg = {"batch_size": 2, "max_seq_len": 48, "checkpoint_every": 1, "learning_rate": 1e-3, "keep_checkpoints": 2}
    return [sys.executable, "-m", "blacksoil.learning.trainer", "--run-dir", str(run_dir), "--samples", str(samples),
            "--steps", str(steps), "--config", json.dumps(cfg), "--out", str(out),
            "--home", os.environ["BLACKSOIL_HOME"]]


def test_killed_trainer_resumes_to_the_same_weights(base_info: BaseModelInfo, tmp_path: Path,
                                                    secret_samples: list[TrainSample]) -> None:
    from safetensors.torch import load_file

    samples = tmp_path / "samples.jsonl"
    write_samples(secret_samples, samples)
    steps = 5
    env = os.environ | {"OMP_NUM_THREADS": "1"}
    # Reference: an uninterrupted run.
    ref = subprocess.run(_trainer_cmd(tmp_path / "ref", samples, steps, tmp_path / "ref_out"), env=env,
                         capture_output=True, text=True, timeout=300)
    assert ref.returncode == 0, ref.stderr[-2000:]
    # Killed run: SIGKILL once two checkpoints exist, then start it again.
    run_dir = tmp_path / "killed"
    proc = subprocess.Popen(_trainer_cmd(run_dir, samples, steps, tmp_path / "out"), env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    deadline = time.monotonic() + 240
    while not (run_dir / "ckpt-0000002").exists():
        assert proc.poll() is None and time.monotonic() < deadline, "trainer died or never checkpointed"
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert not (tmp_path / "out").exists(), "the trainer finished before the kill; nothing was tested"
    again = subprocess.run(_trainer_cmd(run_dir, samples, steps, tmp_path / "out"), env=env,
                           capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr[-2000:]
    summary = json.loads(again.stdout.strip().splitlines()[-1])
    assert summary["steps"] == steps
    assert summary["resumed_from"] >= 2
    a = load_file(str(tmp_path / "ref_out" / "adapter_model.safetensors"))
    b = load_file(str(tmp_path / "out" / "adapter_model.safetensors"))
    assert a.keys() == b.keys()
    for k in a:
        assert (a[k] - b[k]).abs().max().item() < 1e-5, k


@pytest.mark.slow  # two extra processes each importing torch + transformers: ~1 min of CPU
def test_ddp_two_ranks_stay_in_sync_with_a_comm_hook(base_info: BaseModelInfo, tmp_path: Path,
                                                     secret_samples: list[TrainSample]) -> None:
    from blacksoil.learning.ddp import train_ddp

    cfg = LearningConfig(batch_size=2, max_seq_len=48, learning_rate=1e-3, checkpoint_every=10)
    ranks = train_ddp(base_info, cfg, tmp_path / "ddp", secret_samples, 2, world_size=2,
                      comm_hook="blacksoil.learning.ddp:fp16_compress")
    assert [r["steps"] for r in ranks] == [2, 2]
    r0, r1 = ranks[0]["lora"], ranks[1]["lora"]
    moved = 0
    for k in r0:
        assert (r0[k] - r1[k]).abs().max().item() == 0.0, f"ranks diverged at {k}"
        moved += int(r0[k].abs().sum().item() > 0 and "lora_B" in k)
    assert moved > 0, "no LoRA B weight moved: no training happened"
    assert (tmp_path / "ddp" / "adapter" / "adapter_model.safetensors").exists()


def test_unknown_comm_hook_is_a_clear_error() -> None:
    from blacksoil.errors import ConfigError
    from blacksoil.learning.trainer import load_comm_hook

    with pytest.raises(ConfigError, match="no_such_module"):
        load_comm_hook("no_such_module:hook")
