"""The worker's result of a preempted and resumed training: every step's loss in step order and the last NLL per
trajectory, merged from all its runs' steps.jsonl; and samples keep their trajectory and behaviour log-probabilities
on the way to the worker."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from blacksoil.errors import ConfigError
from blacksoil.learning.samples import TrainSample
from blacksoil.learning.trainer import read_samples, write_samples
from blacksoil.learning.worker import read_result, write_result


def _steps(run_dir: Path, *records: tuple[int, float, dict[str, float], int]) -> None:
    with (run_dir / "steps.jsonl").open("a") as f:
        for step, loss, nll, pid in records:
            f.write(json.dumps({"step": step, "loss": loss, "nll": nll, "pid": pid, "at": 0.0}) + "\n")


def test_the_result_merges_every_run_of_a_preempted_training(tmp_path: Path) -> None:
    _steps(tmp_path, (1, 2.0, {"a": 1.5}, 10), (2, 1.8, {"b": 1.2}, 10))  # first run, preempted after step 2
    _steps(tmp_path, (3, 1.6, {"a": 0.9}, 11), (4, 1.4, {"c": 0.7}, 11))  # resumed run
    write_result(tmp_path, 4)
    res = read_result(tmp_path)
    assert (res.steps, res.losses, res.trajectory_nll) == (4, [2.0, 1.8, 1.6, 1.4], {"a": 0.9, "b": 1.2, "c": 0.7})


def test_a_step_run_twice_after_a_crash_counts_once(tmp_path: Path) -> None:
    _steps(tmp_path, (1, 2.0, {"a": 1.5}, 10), (2, 1.8, {"a": 1.4}, 10), (2, 1.7, {"a": 1.3}, 11))
    write_result(tmp_path, 2)
    assert read_result(tmp_path).losses == [2.0, 1.7]


def test_no_result_before_the_worker_is_done(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="has not finished"):
        read_result(tmp_path)


def test_samples_keep_trajectory_and_behaviour_logprobs(tmp_path: Path) -> None:
    samples = [TrainSample((1, 2), (3, 4), trajectory="17", behaviour_logprobs=(-0.5, -0.25), group="t1"),
               TrainSample((5,), (6,))]
    write_samples(samples, tmp_path / "s.jsonl")
    assert read_samples(tmp_path / "s.jsonl") == samples
