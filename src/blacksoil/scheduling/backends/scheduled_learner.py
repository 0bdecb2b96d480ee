"""The learner as a scheduled workload of the platform: each learning round's training runs in the preemptible
worker process, placed, preempted and resumed by the local backend's unified policy.

ScheduledRunner is a learning.runner.TrainRunner: it writes the round's samples, assigns them to the LearnerWorkload
and waits until the worker reports the last step done, however often serving took its cores meanwhile. ControlLoop
steps the LocalBackend in a thread of its own, so scheduling goes on between rounds (the learner then holds no core
and serving may use them all) and while the learner's thread collects or gates.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any, Protocol

from blacksoil.errors import BlacksoilError, InternalError, RetryableError
from blacksoil.learning.runner import TrainJob
from blacksoil.learning.trainer import StepCallback, TrainResult, write_samples
from blacksoil.learning.worker import read_result
from blacksoil.scheduling.backends.local import LocalBackend
from blacksoil.scheduling.backends.platform_workloads import LearnerWorkload, WorkerJob
from blacksoil.scheduling.config import SchedulingConfig

__all__ = ["ControlLoop", "ScheduledRunner", "local_config"]

log = logging.getLogger(__name__)

SAMPLES_FILE = "samples.jsonl"


def local_config(cfg: SchedulingConfig) -> SchedulingConfig:
    """`cfg` as the local backend runs it: one control step every `local_step_s`, and no modelled start, stop or
    cold-start delays, because locally a stop returns once the checkpoint is written and a replica once it answers."""
    return cfg.model_copy(update={"step_s": cfg.local_step_s, "restart_s": 0.0, "kill_grace_s": 0.0,
                                  "replica_cold_start_s": 0.0})


class Stepped(Protocol):
    """A backend a ControlLoop drives: the LocalBackend, or the RayBackend under `up --backend ray`."""

    def step(self) -> object:
        """Observe demand, decide, carry the decisions out."""
        ...

    def close(self, keep_serving: bool = False) -> None:
        """Checkpoint and stop the learners, and serving too unless `keep_serving`."""
        ...


class ControlLoop:
    """Steps a LocalBackend (or any Stepped backend) every `step_s` seconds in a daemon thread until closed.

    A failed step (the gateway's /metrics briefly unreachable, a worker that failed its checkpoint) is logged and
    the next step tries again: the platform must not lose its scheduler to one bad scrape."""

    def __init__(self, backend: Stepped, step_s: float) -> None:
        self.backend = backend
        self.step_s = step_s
        self.errors = 0
        """Steps that failed (logged)."""
        self.last_error: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> ControlLoop:
        self._thread = threading.Thread(target=self._run, daemon=True, name="local-scheduler")
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.backend.step()
            except BlacksoilError as e:
                self.errors += 1
                self.last_error = e.message
                log.warning("scheduling step failed (the next one retries): %s", e.message)
            self._stop.wait(self.step_s)

    def close(self, keep_serving: bool = True) -> None:
        """Stop stepping, then checkpoint and stop the learner; serving keeps its replicas unless `keep_serving` is
        False (the gateway stops them itself when it shuts down)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.step_s + 300)  # a step may be draining a replica or checkpointing
        self.backend.close(keep_serving=keep_serving)


class ScheduledRunner:
    """Runs each round's training in `workload`, wherever and whenever the backend places it.

    `stop` ends the wait (the platform is shutting down): the round fails, and the worker is stopped through a
    checkpoint by the backend (its assignment is taken away)."""

    def __init__(self, workload: LearnerWorkload, stop: threading.Event, poll_s: float = 0.5,
                 backend: LocalBackend | None = None) -> None:
        """`backend`: the one placing `workload`; the eval gate then scores on the cores it leaves free."""
        self.workload = workload
        self.stop = stop
        self.poll_s = poll_s
        self.backend = backend

    def scoring_cores(self) -> tuple[int, ...]:
        """The cores the backend leaves free now: between rounds the learner holds none, and serving only what its
        demand needs. () when serving took every core (the scoring engine then runs where the OS puts it)."""
        return self.backend.free_cores() if self.backend is not None else ()

    def run(self, job: TrainJob, on_step: StepCallback | None = None) -> TrainResult:
        t0 = time.monotonic()
        job.run_dir.mkdir(parents=True, exist_ok=True)
        samples = job.run_dir / SAMPLES_FILE
        write_samples(job.samples, samples)
        self.workload.assign(WorkerJob(job.run_dir, job.steps, job.cfg.model_dump(mode="json"), samples=samples,
                                       init_adapter=job.init_adapter, adapter_out=job.adapter_out))
        try:
            self._wait(job, on_step)
        except BaseException:
            self.workload.assign(None)  # nobody waits for it any more: the backend checkpoints it and frees its core
            raise
        res: TrainResult = read_result(job.run_dir)
        res.seconds = time.monotonic() - t0
        return res

    def _wait(self, job: TrainJob, on_step: StepCallback | None) -> None:
        reported = 0
        while True:
            for rec in self.workload.records()[reported:]:
                reported += 1
                if on_step is not None:
                    on_step(int(rec["step"]), {"loss": float(rec["loss"])})
            if self.workload.failed:
                raise InternalError(f"the learner worker training {str(job.run_dir)!r} exited with "
                                    f"{self.workload.exit_codes[-1]}; see {self.workload.log_path}")
            st: dict[str, Any] = self.workload.status()
            if st.get("state") == "done" and int(st.get("step", 0)) >= job.steps and not self.workload.running:
                return
            if self.stop.wait(self.poll_s):
                raise RetryableError(f"the platform is stopping: training in {str(job.run_dir)!r} stops at its last "
                                     "checkpoint")
