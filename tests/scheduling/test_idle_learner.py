"""A learner with nothing to do holds no core: the local backend takes it out of the queue, serving may use every
core, and work brings it back (real processes: the sha256 learner and the spinning server of test_local_backend)."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from blacksoil.scheduling.backends.local import LocalBackend
from blacksoil.scheduling.backends.process import ProcessWorkload
from blacksoil.scheduling.config import SchedulingConfig
from blacksoil.scheduling.state import JobStatus

from .conftest import step_until

WORKERS = Path(__file__).parent / "workers"
CFG = SchedulingConfig(step_s=0.2, replica_cold_start_s=0.0, restart_s=0.0, kill_grace_s=0.0,
                       hpa_scale_down_window_s=0.6, headroom_sigmas=0.0, min_headroom=0.0, lend_horizon_s=0.2)



class AssignableLearner(ProcessWorkload):
    """The sha256 learner with a switch for whether it has work (what LearnerWorkload.has_work reports from its
    assignment for the real learner)."""

    has_work = False


def _until(backend: LocalBackend, cond: Callable[[], bool], timeout: float = 30.0) -> None:
    step_until(backend, cond, step_s=CFG.step_s, timeout=timeout)


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs two cores to split")
def test_an_idle_learner_holds_no_core_and_work_brings_it_back(tmp_path: Path) -> None:
    cores = tuple(sorted(os.sched_getaffinity(0))[:2])
    learner = AssignableLearner("learner", "learning", [sys.executable, str(WORKERS / "learner.py"),
                                                        str(tmp_path / "ckpt.json"), str(tmp_path / "learner.jsonl")],
                                stop_timeout_s=20)
    serving = ProcessWorkload("gateway", "serving", [sys.executable, str(WORKERS / "spin.py"),
                                                     str(tmp_path / "serving.jsonl")])
    load = [0.3]
    backend = LocalBackend(serving, [learner], demand=lambda: load[0], cores=cores, cfg=CFG)
    try:
        for _ in range(3):
            backend.step()
        idle = backend.history[-1]
        assert idle.learner_cores == {} and not learner.running
        assert backend.state.jobs.status[0] == JobStatus.WAITING

        # Serving wants both cores: nothing is held back for the learner that has no work.
        load[0] = 1.5
        _until(backend, lambda: backend.history[-1].serving_cores == cores)

        # The load falls and the learner gets work: the serving replica goes, the learner starts on its core.
        load[0] = 0.3
        learner.has_work = True
        _until(backend, lambda: learner.running)
        assert backend.history[-1].learner_cores == {"learner": cores[1:]}

        # Its work is done: it is stopped through a checkpoint and leaves the queue again.
        learner.has_work = False
        rec = backend.step()
        assert not learner.running and rec.learner_cores == {}
        assert [d.reason for d in rec.decisions][:1] == ["no work left: round finished or called off"]
        assert backend.state.jobs.status[0] == JobStatus.WAITING
    finally:
        backend.close()
