"""A preemptible learner process: trains the LoRA, checkpoints and exits 0 on SIGTERM, resumes on start.

`python -m blacksoil.learning.worker --run-dir DIR --steps N [--samples JSONL] [--init-adapter DIR]` is what the
scheduler's local backend starts and stops; `DIR/status.json` shows progress and `DIR/steps.jsonl` logs every
step any run of it completed (with each step's per-trajectory NLL). When the last step is done it writes the adapter
(`--adapter-out`, default `DIR/adapter`) and `DIR/result.json` (the whole training's TrainResult, read back with
`read_result`), then status "done", in that order: a reader that sees "done" finds both.
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
RESULT_FILE = "result.json"
ADAPTER_DIR = "adapter"

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

    def __init__(self, run_dir: Path, steps: int, adapter_out: Path | None = None) -> None:
        if steps < 1:
            raise ConfigError(f"--steps {steps} must be at least 1")
        self.run_dir = run_dir
        self.steps = steps
        self.adapter_out = adapter_out if adapter_out is not None else run_dir / ADAPTER_DIR
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
        # The step's per-trajectory NLL goes with it: the result of a preempted and resumed training is the merge
        # of every run's lines, so replay priorities cover the steps of earlier runs too.
        nll = dict(getattr(self.trainer, "last_trajectory_nll", {}))
        with (self.run_dir / STEPS_FILE).open("a") as f:
            f.write(json.dumps({"step": step, "loss": stats["loss"], "nll": nll, "pid": os.getpid(),
                                "at": time.time()}) + "\n")
        self.write_status("running", step)
        if self.stopping and step < self.steps:
            self._checkpoint(step)
            raise Preempted

    def run(self, samples: Sequence[Any], cfg: Any, info: Any, init_adapter: Path | None = None) -> str:
        """Train to `steps` (resuming if a checkpoint exists) from `init_adapter` (None = a fresh LoRA); returns
        'done' or 'preempted'."""
        from blacksoil.learning.trainer import LoraTrainer

        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.resumed_from = self._saved_step() or None  # train() resumes from this checkpoint
        self.write_status("loading", self._saved_step())
        # Stopped while loading: nothing new to save, so leave before (or right after) the slow model load.
        if not self.stopping:
            self.trainer = LoraTrainer(info, cfg, self.run_dir, init_adapter=init_adapter)
        if self.stopping:
            self.write_status("preempted", self._saved_step())
            return "preempted"
        try:
            res = self.trainer.train(samples, self.steps, on_step=self.on_step)
        except Preempted:
            self.write_status("preempted", self.trainer.step)
            return "preempted"
        self.trainer.save_adapter(self.adapter_out)
        write_result(self.run_dir, res.steps)
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


def write_result(run_dir: Path, steps: int) -> None:
    """result.json from steps.jsonl: every step's loss in step order and the last NLL seen per trajectory."""
    by_step: dict[int, dict[str, Any]] = {}
    path = run_dir / STEPS_FILE
    for line in path.read_text().splitlines() if path.exists() else []:
        rec = json.loads(line)
        by_step[int(rec["step"])] = rec  # a step run twice (only after a crash) counts with its last run
    nll: dict[str, float] = {}
    for step in sorted(by_step):
        nll.update(by_step[step].get("nll", {}))
    tmp = run_dir / f".{RESULT_FILE}.{os.getpid()}"
    tmp.write_text(json.dumps({"steps": steps, "losses": [by_step[s]["loss"] for s in sorted(by_step)],
                               "trajectory_nll": nll}))
    os.replace(tmp, run_dir / RESULT_FILE)


def read_result(run_dir: Path) -> Any:
    """The TrainResult of a finished worker training in `run_dir` (resumed_from None: the training as a whole
    started fresh; `seconds` is left to the caller, who saw the wall time including any time preempted)."""
    from blacksoil.learning.trainer import TrainResult

    path = run_dir / RESULT_FILE
    if not path.exists():
        raise ConfigError(f"{str(path)!r} does not exist: the worker in {str(run_dir)!r} has not finished; wait for "
                          f"state 'done' in its {STATUS_FILE}")
    data = json.loads(path.read_text())
    return TrainResult(steps=int(data["steps"]), resumed_from=None, losses=[float(x) for x in data["losses"]],
                       trajectory_nll={str(k): float(v) for k, v in data["trajectory_nll"].items()})


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
    ap.add_argument("--init-adapter", type=Path, default=None,
                    help="peft adapter folder to continue training from (the served version); default: a fresh LoRA")
    ap.add_argument("--adapter-out", type=Path, default=None,
                    help=f"write the trained peft adapter here when done (default: RUN_DIR/{ADAPTER_DIR})")
    args = ap.parse_args(argv)
    try:
        worker = LearnerWorker(args.run_dir, args.steps, args.adapter_out)
        signal.signal(signal.SIGTERM, worker.on_term)  # before the slow imports: a stop may come at any time
        # Ctrl-C in a terminal reaches the whole process group, this worker included: a checkpointed stop too.
        signal.signal(signal.SIGINT, worker.on_term)
        from blacksoil.learning.config import LearningConfig

        # The parent resolved the settings and passes them: this process never reads files or the environment.
        cfg = _config(args.config, LearningConfig())
        if hasattr(os, "sched_getaffinity"):  # the backend pins this process: one torch thread per core it got
            cfg = cfg.model_copy(update={"torch_threads": len(os.sched_getaffinity(0))})
        outcome = _train(worker, cfg, args.samples, args.home, args.init_adapter)
        # Nothing is left to save: a stop now must not kill the interpreter's shutdown (which puts the default
        # SIGTERM action back while torch tears down) and turn a finished run into exit -15.
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
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


def _train(worker: LearnerWorker, cfg: Any, samples_path: Path | None, home: Path, init_adapter: Path | None) -> str:
    from blacksoil.learning.basemodel import ensure_hf_copy, load_tokenizer
    from blacksoil.learning.trainer import read_samples

    info = ensure_hf_copy(home, cfg.base_model_path)
    if samples_path is not None:
        if not samples_path.exists():
            raise ConfigError(f"--samples {str(samples_path)!r} does not exist; write it with trainer.write_samples")
        samples = read_samples(samples_path)
    else:
        samples = fixed_samples(load_tokenizer(info))
    if init_adapter is not None and not (init_adapter / "adapter_config.json").exists():
        raise ConfigError(f"--init-adapter {str(init_adapter)!r} is not a peft adapter folder (no "
                          "adapter_config.json); pass the served version's safetensors folder or leave it out")
    return worker.run(samples, cfg, info, init_adapter)


if __name__ == "__main__":
    main()
