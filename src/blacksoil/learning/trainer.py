"""The LoRA trainer: peft LoRA on the cached fp32 base, weighted log-likelihood steps, resumable checkpoints.

Runs alone or as one rank of a gloo DDP group (see ddp.py); the gradient all-reduce takes a pluggable comm hook.
"""

from __future__ import annotations

import argparse
import importlib
import json
import random
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from blacksoil.errors import ConfigError, UserError
from blacksoil.learning.basemodel import BaseModelInfo, load_model
from blacksoil.learning.checkpoint import Checkpointer
from blacksoil.learning.config import LearningConfig
from blacksoil.learning.objectives import anchored_loss, clipped_policy_loss, weighted_loss
from blacksoil.learning.packing import collate_packed
from blacksoil.learning.samples import TrainSample

StepCallback = Callable[[int, dict[str, float]], None]

OPTIMIZER_FILE = "optimizer.pt"
"""AdamW's state saved beside an adapter, so a trainer that starts from that adapter continues its optimizer."""


@dataclass
class TrainResult:
    """What one `train` call did."""

    steps: int
    """Optimizer steps completed in total (including those before a resume)."""
    resumed_from: int | None
    """Step of the checkpoint training resumed from (None = fresh start)."""
    losses: list[float] = field(default_factory=list)
    """Loss of each step run by this call."""
    seconds: float = 0.0
    """Wall time of this call (s)."""
    trajectory_nll: dict[str, float] = field(default_factory=dict)
    """Last mean completion NLL seen for each trajectory this call trained on (replay's new priorities)."""


def load_comm_hook(spec: str) -> Callable[[Any], tuple[Any, Any]]:
    """Import a DDP comm-hook factory `package.module:function(process_group) -> (state, hook)`."""
    mod_name, _, fn_name = spec.partition(":")
    try:
        fn = getattr(importlib.import_module(mod_name), fn_name)
    except (ImportError, AttributeError, ValueError) as e:
        raise ConfigError(
            f"comm hook {spec!r} cannot be imported ({e}); give `package.module:factory` returning (state, hook)"
        ) from None
    if not callable(fn):
        raise ConfigError(f"comm hook {spec!r} is not callable; give `package.module:factory`")
    return fn


class LoraTrainer:
    """One trainer process (or DDP rank) over a fresh copy of the base model with LoRA on q, k, v, o."""

    def __init__(self, info: BaseModelInfo, cfg: LearningConfig, run_dir: Path, *, init_adapter: Path | None = None,
                 rank: int = 0, world_size: int = 1, comm_hook: str | None = None) -> None:
        import torch
        from peft import LoraConfig, PeftModel, get_peft_model

        if cfg.batch_size % world_size:
            raise ConfigError(
                f"batch_size {cfg.batch_size} does not split over {world_size} ranks; use a multiple of {world_size}"
            )
        torch.set_num_threads(cfg.torch_threads)
        torch.manual_seed(cfg.seed)
        self.cfg, self.info, self.rank, self.world_size = cfg, info, rank, world_size
        base = load_model(info)
        self.pad_id = int(base.config.pad_token_id if base.config.pad_token_id is not None else 0)
        if init_adapter is not None:
            if not (Path(init_adapter) / "adapter_config.json").exists():
                raise ConfigError(f"{str(init_adapter)!r} is not a peft adapter folder (no adapter_config.json)")
            self.model = PeftModel.from_pretrained(base, str(init_adapter), is_trainable=True)
        else:
            n_layers = int(base.config.num_hidden_layers)
            if cfg.lora_layers > n_layers:
                raise ConfigError(f"lora_layers={cfg.lora_layers} but the model has {n_layers} layers; "
                                  f"use 0 (all) or at most {n_layers}")
            # LoRA on the top layers only: backward then stops there (nothing below needs a gradient).
            layers = list(range(n_layers - cfg.lora_layers, n_layers)) if cfg.lora_layers else None
            lcfg = LoraConfig(r=cfg.lora_rank, lora_alpha=cfg.lora_alpha, lora_dropout=0.0,
                              target_modules=list(cfg.lora_targets), bias="none", task_type="CAUSAL_LM",
                              layers_to_transform=layers)
            self.model = get_peft_model(base, lcfg)
        self.model.train()
        self.params = {n: p for n, p in self.model.named_parameters() if p.requires_grad}
        self.optimizer = torch.optim.AdamW(list(self.params.values()), lr=cfg.learning_rate, weight_decay=0.0)
        self.continued_optimizer = init_adapter is not None and self._continue_optimizer(Path(init_adapter))
        """Whether AdamW's moments came with `init_adapter` (False: a fresh optimizer)."""
        self.forward: Any = self.model
        if world_size > 1:
            from torch.nn.parallel import DistributedDataParallel as DDP

            self.forward = DDP(self.model)
            if comm_hook:
                state, hook = load_comm_hook(comm_hook)(None)
                self.forward.register_comm_hook(state, hook)
        self.checkpoints = Checkpointer(run_dir, keep=cfg.keep_checkpoints)
        self.run_dir = run_dir
        self.step = 0
        self.last_trajectory_nll: dict[str, float] = {}
        """Mean completion NLL per trajectory of the step just finished (a worker logs it with the step)."""

    @property
    def trainable_parameters(self) -> int:
        """Number of LoRA parameters being trained."""
        return sum(p.numel() for p in self.params.values())

    def _continue_optimizer(self, adapter_dir: Path) -> bool:
        """Load the AdamW state saved with `adapter_dir` (by `save_adapter`), if there is one.

        A fresh AdamW's first steps move every weight by about the learning rate whatever its gradient's size, so a
        round that restarts it shakes the adapter it continues (measured: 26 steps, a fresh optimizer, 26 more on
        the same data kept 5 of 20 held-out tasks where 52 steps in one go kept 7)."""
        import torch

        path = adapter_dir / OPTIMIZER_FILE
        if not path.exists():
            return False
        saved = torch.load(path, weights_only=True)
        if saved.get("names") != list(self.params):
            raise ConfigError(f"{str(path)!r} holds the optimizer of other LoRA parameters than the adapter beside "
                              "it; delete that file to start a fresh optimizer")
        self.optimizer.load_state_dict(saved["optimizer"])
        for group in self.optimizer.param_groups:  # this run's learning rate, not the saved one
            group["lr"] = self.cfg.learning_rate
        return True

    def resume(self) -> int | None:
        """Continue from the newest checkpoint in the run folder, if there is one."""
        import torch

        ckpt = self.checkpoints.latest()
        if ckpt is None:
            return None
        lora, state = self.checkpoints.load(ckpt, self.optimizer)
        if set(lora) != set(self.params):
            raise ConfigError(
                f"checkpoint {str(ckpt.path)!r} does not match this LoRA configuration (rank/targets changed); "
                "use a new run folder"
            )
        with torch.no_grad():
            for name, value in lora.items():
                self.params[name].copy_(value)
        self.step = int(state["step"])
        return self.step

    def batch_indices(self, samples: Sequence[TrainSample], step: int) -> list[int]:
        """This rank's sample indices for `step`.

        Each epoch is a seeded permutation of trajectories (a trajectory's calls stay together so they pack into
        one row); resume therefore replays the same data. Ranks take contiguous slices of the step's samples.
        """
        units: dict[Any, list[int]] = {}
        for i, s in enumerate(samples):
            units.setdefault(s.trajectory if s.trajectory is not None else ("sample", i), []).append(i)
        groups = list(units.values())
        n, b = len(samples), self.cfg.batch_size
        out = []
        epoch_order: dict[int, list[int]] = {}
        for j in range(step * b, (step + 1) * b):
            epoch, pos = divmod(j, n)
            if epoch not in epoch_order:
                perm = list(range(len(groups)))
                random.Random(self.cfg.seed * 1_000_003 + epoch).shuffle(perm)
                epoch_order[epoch] = [i for g in perm for i in groups[g]]
            out.append(epoch_order[epoch][pos])
        per_rank = b // self.world_size
        return out[self.rank * per_rank : (self.rank + 1) * per_rank]

    def train(self, samples: Sequence[TrainSample], total_steps: int,
              on_step: StepCallback | None = None) -> TrainResult:
        """Run optimizer steps until `total_steps` are done, checkpointing every `checkpoint_every`."""
        import torch

        if not samples:
            raise UserError("no training samples: collect successful attempts first (or lower the reward threshold)")
        started = time.monotonic()
        result = TrainResult(steps=0, resumed_from=self.resume())
        while self.step < total_steps:
            picked = [samples[i] for i in self.batch_indices(samples, self.step)]
            batch = collate_packed(picked, self.cfg.max_seq_len, self.pad_id)
            if self.cfg.objective == "grpo":
                loss, stats, nll = clipped_policy_loss(self.forward, self.model.disable_adapter, batch,
                                                       self.cfg.clip_eps, self.cfg.kl_coef)
            elif self.cfg.sft_kl_coef > 0:
                loss, stats, nll = anchored_loss(self.forward, self.model.disable_adapter, batch, self.cfg.sft_kl_coef)
            else:
                loss, stats, nll = weighted_loss(self.forward, batch)
            self.last_trajectory_nll = _per_trajectory(picked, nll)
            result.trajectory_nll.update(self.last_trajectory_nll)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(list(self.params.values()), 1.0)
            self.optimizer.step()
            self.step += 1
            result.losses.append(stats["loss"])
            if self.rank == 0 and (self.step % self.cfg.checkpoint_every == 0 or self.step == total_steps):
                self.checkpoints.save(self.step, self.params, self.optimizer, {"loss": stats["loss"]})
            if on_step is not None:
                on_step(self.step, stats)
        result.steps = self.step
        result.seconds = time.monotonic() - started
        return result

    def save_adapter(self, out_dir: Path) -> Path:
        """Write the peft adapter folder (safetensors + adapter_config.json) and, beside it, the optimizer's state
        (OPTIMIZER_FILE) for a trainer that continues from this adapter."""
        import torch

        out_dir.mkdir(parents=True, exist_ok=True)
        self.model.save_pretrained(str(out_dir))
        torch.save({"names": list(self.params), "optimizer": self.optimizer.state_dict()}, out_dir / OPTIMIZER_FILE)
        return out_dir


def _per_trajectory(samples: Sequence[TrainSample], nll: Sequence[float]) -> dict[str, float]:
    sums: dict[str, list[float]] = {}
    for sample, value in zip(samples, nll, strict=True):
        if sample.trajectory is not None:
            sums.setdefault(sample.trajectory, []).append(value)
    return {t: sum(v) / len(v) for t, v in sums.items()}


def write_samples(samples: Sequence[TrainSample], path: Path) -> None:
    """Samples as JSON lines (for a trainer subprocess)."""
    with path.open("w") as f:
        for s in samples:
            f.write(json.dumps({"prompt_ids": s.prompt_ids, "completion_ids": s.completion_ids, "reward": s.reward,
                                "weight": s.weight, "group": s.group, "advantage": s.advantage,
                                "trajectory": s.trajectory, "behaviour_logprobs": s.behaviour_logprobs}) + "\n")


def read_samples(path: Path) -> list[TrainSample]:
    """Inverse of write_samples."""
    out = []
    for line in path.read_text().splitlines():
        d = json.loads(line)
        d["prompt_ids"], d["completion_ids"] = tuple(d["prompt_ids"]), tuple(d["completion_ids"])
        if d.get("behaviour_logprobs") is not None:
            d["behaviour_logprobs"] = tuple(d["behaviour_logprobs"])
        out.append(TrainSample(**d))
    return out


def main(argv: list[str] | None = None) -> None:
    """Train in this process from a samples file (used for subprocess training and the kill/resume test).

    A process entry point (`python -m blacksoil.learning.trainer`): the parent passes its settings (`--home`, the
    LearningConfig as `--config`); nothing is read from files or the environment here.
    """
    from blacksoil.learning.basemodel import ensure_hf_copy

    ap = argparse.ArgumentParser(description="Train a LoRA from a JSONL samples file; resumes from run-dir.")
    ap.add_argument("--run-dir", required=True, type=Path)
    ap.add_argument("--samples", required=True, type=Path)
    ap.add_argument("--steps", required=True, type=int)
    ap.add_argument("--config", default="{}", help="the parent's LearningConfig as JSON (missing fields: defaults)")
    ap.add_argument("--home", required=True, type=Path, help="the parent's blacksoil home (the fp32 base-model cache)")
    ap.add_argument("--out", type=Path, default=None, help="write the peft adapter here when done")
    args = ap.parse_args(argv)
    cfg = LearningConfig.model_validate(json.loads(args.config))
    info = ensure_hf_copy(args.home, cfg.base_model_path)
    trainer = LoraTrainer(info, cfg, args.run_dir)
    res = trainer.train(read_samples(args.samples), args.steps,
                        on_step=lambda s, st: print(f"step {s} loss {st['loss']:.4f}", flush=True))
    if args.out is not None:
        trainer.save_adapter(args.out)
    print(json.dumps({"steps": res.steps, "resumed_from": res.resumed_from}), flush=True)
    sys.stdout.flush()


if __name__ == "__main__":
    main()
