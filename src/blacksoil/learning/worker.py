"""A preemptible learner process: trains the LoRA, checkpoints and exits 0 on SIGTERM, resumes on start.

`python -m blacksoil.learning.worker --run-dir DIR --steps N` is what the scheduler's local backend starts
and stops; `DIR/status.json` shows progress and `DIR/steps.jsonl` logs every step this process completed.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from types import FrameType
from typing import Any

from blacksoil.errors import BlacksoilError, ConfigError

STATUS_FILE = "status.json"
STEPS_FILE = "steps.jsonl"

# The built-in fixed dataset: short plant-floor questions with the answers the LoRA should learn.
FIXED_PAIRS = (
    ("Which line is down?", "Line 3 is down for a spindle change."),
    ("What is the torque limit of press 2?", "Press 2 is limited to 45 Nm."),
    ("When does the night shift start?", "The night shift starts at 22:00."),
    ("Which pump needs coolant?", "Pump 7 needs coolant before the next batch."),
)


class Preempted(Exception):
    """SIGTERM arrived: the current step finished and a checkpoint was written."""


class LearnerWorker:
    """One learner process: the trainer, its run folder, and the SIGTERM flag checked between steps."""

    def __init__(self, run_dir: Path, steps: int) -> None:
        if steps < 1:
            raise ConfigError(f"--steps {steps} must be at least 1")
        self.run_dir = run_dir
        self.steps = steps
        self.stopping = False
        self.resumed_from: int | None = None
        self.trainer: Any = None

    def on_term(self, signum: int, frame: FrameType | None) -> None:
        # Only set a flag: the step in progress finishes, then on_step checkpoints and leaves.
        self.stopping = True

    def write_status(self, state: str, step: int) -> None:
        """Atomically replace status.json (readers never see half a file)."""
        tmp = self.run_dir / f".{STATUS_FILE}.{os.getpid()}"
        tmp.write_text(json.dumps({"state": state, "step": step, "steps": self.steps, "pid": os.getpid(),
                                   "resumed_from": self.resumed_from, "cores": sorted(os.sched_getaffinity(0)),
                                   "threads": self._threads(), "at": time.time()}))
        os.replace(tmp, self.run_dir / STATUS_FILE)

    def on_step(self, step: int, stats: dict[str, float]) -> None:
        """Log the finished step; on SIGTERM make sure a checkpoint holds it, then unwind out of train()."""
        with (self.run_dir / STEPS_FILE).open("a") as f:
            f.write(json.dumps({"step": step, "loss": stats["loss"], "pid": os.getpid(), "at": time.time()}) + "\n")
        self.write_status("running", step)
        if self.stopping and step < self.steps:
            self._checkpoint(step)
            raise Preempted

    def run(self, samples: Sequence[Any], cfg: Any, info: Any) -> str:
        """Train to `steps` (resuming if a checkpoint exists); returns 'done' or 'preempted'."""
        from blacksoil.learning.trainer import LoraTrainer

        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.resumed_from = self._saved_step() or None  # train() resumes from this checkpoint
        self.write_status("loading", self._saved_step())
        # Stopped while loading: nothing new to save, so leave before (or right after) the slow model load.
        if not self.stopping:
            self.trainer = LoraTrainer(info, cfg, self.run_dir)
        if self.stopping:
            self.write_status("preempted", self._saved_step())
            return "preempted"
        try:
            res = self.trainer.train(samples, self.steps, on_step=self.on_step)
        except Preempted:
            self.write_status("preempted", self.trainer.step)
            return "preempted"
        self.write_status("done", res.steps)
        return "done"

    def _checkpoint(self, step: int) -> None:
        t = self.trainer
        if self._saved_step() != step:
            t.checkpoints.save(step, t.params, t.optimizer, {"preempted": True})

    def _saved_step(self) -> int:
        from blacksoil.learning.checkpoint import Checkpointer

        latest = Checkpointer(self.run_dir).latest()
        return latest.step if latest else 0

    def _threads(self) -> int:
        import torch

        return int(torch.get_num_threads())


def fixed_samples(tokenizer: Any) -> list[Any]:
    """FIXED_PAIRS rendered through the chat template, as the engine would see them."""
    from blacksoil.learning.samples import TrainSample

    out = []
    for question, answer in FIXED_PAIRS:
        prompt = tokenizer.apply_chat_template([{"role": "user", "content": question}], tokenize=True,
                                               add_generation_prompt=True)
        if not isinstance(prompt, list):
            prompt = prompt["input_ids"]
        completion = tokenizer(answer + "<|im_end|>", add_special_tokens=False).input_ids
        out.append(TrainSample(tuple(int(i) for i in prompt), tuple(int(i) for i in completion)))
    return out


def main(argv: list[str] | None = None) -> None:
    """Parse flags, load the base model and samples, train until done or SIGTERM; bad input exits 2 with a message."""
    ap = argparse.ArgumentParser(description="Preemptible LoRA learner: SIGTERM → finish the step, checkpoint, "
                                             "exit 0; a restart resumes from the newest checkpoint in --run-dir.")
    ap.add_argument("--run-dir", required=True, type=Path, help="checkpoints, status.json and steps.jsonl go here")
    ap.add_argument("--steps", required=True, type=int, help="total optimizer steps to reach (across restarts)")
    ap.add_argument("--samples", type=Path, default=None,
                    help="JSONL samples (trainer.write_samples); default: the built-in fixed dataset")
    ap.add_argument("--config", default="{}", help="the parent's LearningConfig as JSON (fields not given keep "
                                                   "their defaults), e.g. '{\"batch_size\": 2}'")
    ap.add_argument("--home", required=True, type=Path, help="the parent's blacksoil home (the fp32 base-model cache)")
    args = ap.parse_args(argv)
    try:
        worker = LearnerWorker(args.run_dir, args.steps)
        signal.signal(signal.SIGTERM, worker.on_term)  # before the slow imports: a stop may come at any time
        from blacksoil.learning.config import LearningConfig

        # The parent resolved the settings and passes them: this process never reads files or the environment.
        cfg = _config(args.config, LearningConfig())
        if hasattr(os, "sched_getaffinity"):  # the backend pins this process: one torch thread per core it got
            cfg = cfg.model_copy(update={"torch_threads": len(os.sched_getaffinity(0))})
        outcome = _train(worker, cfg, args.samples, args.home)
    except BlacksoilError as e:
        print(f"error: {e.message}", file=sys.stderr, flush=True)
        sys.exit(2)
    print(json.dumps({"outcome": outcome, "step": worker.trainer.step if worker.trainer else 0}), flush=True)
    sys.exit(0)


def _config(overrides_json: str, base: Any) -> Any:
    """`base` (a LearningConfig) with the --config overrides, validated."""
    from pydantic import ValidationError

    from blacksoil.learning.config import LearningConfig

    try:
        overrides = json.loads(overrides_json)
    except json.JSONDecodeError as e:
        raise ConfigError(f"--config {overrides_json!r} is not JSON ({e}); pass an object like "
                          "'{\"batch_size\": 2}'") from None
    if not isinstance(overrides, dict):
        raise ConfigError(f"--config {overrides_json!r} is not a JSON object; pass one like '{{\"batch_size\": 2}}'")
    try:
        return LearningConfig.model_validate(base.model_dump() | overrides)
    except ValidationError as e:
        first = e.errors()[0]
        where = ".".join(str(x) for x in first["loc"])
        raise ConfigError(f"--config: learning.{where}: {first['msg']}; fix that value") from None


def _train(worker: LearnerWorker, cfg: Any, samples_path: Path | None, home: Path) -> str:
    from blacksoil.learning.basemodel import ensure_hf_copy, load_tokenizer
    from blacksoil.learning.trainer import read_samples

    info = ensure_hf_copy(home, cfg.base_model_path)
    if samples_path is not None:
        if not samples_path.exists():
            raise ConfigError(f"--samples {str(samples_path)!r} does not exist; write it with trainer.write_samples")
        samples = read_samples(samples_path)
    else:
        samples = fixed_samples(load_tokenizer(info))
    return worker.run(samples, cfg, info)


if __name__ == "__main__":
    main()
