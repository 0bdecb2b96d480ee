"""Local backend with real processes: serving load rises → the learner checkpoints and stops; load falls →
the learner resumes from its checkpoint and the sha256 chain proves no step was lost or repeated."""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from blacksoil.scheduling.backends.local import LocalBackend
from blacksoil.scheduling.backends.process import ProcessWorkload
from blacksoil.scheduling.config import SchedulingConfig
from blacksoil.scheduling.state import Action

from .conftest import step_until

WORKERS = Path(__file__).parent / "workers"
sys.path.insert(0, str(WORKERS))
from learner import advance  # noqa: E402

CFG = SchedulingConfig(step_s=0.2, replica_cold_start_s=0.0, restart_s=0.0, kill_grace_s=0.0,
                       hpa_scale_down_window_s=0.6, headroom_sigmas=0.0, min_headroom=0.0, lend_horizon_s=0.2)



def _events(log: Path) -> list[dict]:
    return [json.loads(x) for x in log.read_text().splitlines()] if log.exists() else []


def _until(backend: LocalBackend, cond: Callable[[], bool], timeout: float = 20.0) -> None:
    step_until(backend, cond, step_s=CFG.step_s, timeout=timeout)


def _wait(cond: Callable[[], bool], timeout: float = 10.0) -> None:
    end = time.monotonic() + timeout
    while not cond() and time.monotonic() < end:
        time.sleep(0.05)


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs two cores to split")
def test_capacity_moves_from_learner_to_serving_and_back(tmp_path: Path) -> None:
    cores = sorted(os.sched_getaffinity(0))[:2]
    ckpt, llog, slog = tmp_path / "ckpt.json", tmp_path / "learner.jsonl", tmp_path / "serving.jsonl"
    argv = [sys.executable, str(WORKERS / "learner.py"), str(ckpt), str(llog)]
    learner = ProcessWorkload("learner", "learning", argv, stop_timeout_s=20)
    serving = ProcessWorkload("gateway", "serving", [sys.executable, str(WORKERS / "spin.py"), str(slog)])
    load = [0.5]
    backend = LocalBackend(serving, [learner], demand=lambda: load[0], cores=cores, cfg=CFG)
    try:
        # Low load: one core serves, the other is lent to the learner.
        _until(backend, lambda: learner.running and ckpt.exists())
        _wait(lambda: bool(_events(llog)))
        rec = backend.history[-1]
        assert rec.serving_cores == (cores[0],) and rec.learner_cores == {"learner": (cores[1],)}
        first = _events(llog)[0]
        assert first["cores"] == [cores[1]] and first["threads"] == "1" and first["step"] == 0

        # Load rises: the policy takes the learner's core; the learner checkpoints on the way out.
        load[0] = 1.5
        _until(backend, lambda: not learner.running and backend.history[-1].serving_cores == tuple(cores))
        stops = [d for r in backend.history for d in r.decisions if d.action is Action.STOP]
        assert stops and stops[0].checkpoint and "checkpoint" in stops[0].reason
        stopped = _events(llog)[-1]
        assert stopped["event"] == "stop" and stopped["step"] > 0
        assert json.loads(ckpt.read_text())["step"] == stopped["step"]
        # The restarted serving process records its cores as it starts.
        _wait(lambda: json.loads(slog.read_text().splitlines()[-1])["cores"] == cores)
        assert json.loads(slog.read_text().splitlines()[-1])["cores"] == cores

        # Load falls: serving shrinks after the stabilization window; the learner resumes where it stopped.
        load[0] = 0.3
        _until(backend, lambda: learner.running)
        _wait(lambda: _events(llog)[-1]["event"] == "start")
        resumed = _events(llog)[-1]
        assert resumed["event"] == "start" and resumed["step"] == stopped["step"]
        assert resumed["cores"] == [cores[1]]
        time.sleep(0.5)
    finally:
        backend.close()
    final = json.loads(ckpt.read_text())
    assert final["step"] > stopped["step"]
    digest = "seed"
    for _ in range(final["step"]):
        digest = advance(digest)
    assert digest == final["digest"], "the resumed chain differs: a step was lost or repeated"
    assert not learner.running and not serving.running
