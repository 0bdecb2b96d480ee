"""The platform's real workloads for the local backend: the learner worker process and the gateway's replicas.

LearnerWorkload runs `blacksoil.learning.worker` (SIGTERM = checkpoint and exit); GatewayReplicas grows and
shrinks a running gateway's ReplicaPool in place, one engine replica per core group, draining before a stop.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from blacksoil.contracts import AdapterVersion, Allocation, WorkloadKind
from blacksoil.errors import ConfigError, InternalError, NotFoundError
from blacksoil.learning.worker import STATUS_FILE, STEPS_FILE
from blacksoil.scheduling.backends.process import ProcessWorkload
from blacksoil.serving.pool import ReplicaPool


@dataclass(frozen=True)
class WorkerJob:
    """What the learner worker trains: the flags of `python -m blacksoil.learning.worker` (see there)."""

    run_dir: Path
    """Checkpoints, status.json, steps.jsonl and result.json; a restart resumes from the newest checkpoint here."""
    steps: int
    """Optimizer steps to reach in total, across preemptions."""
    config: dict[str, Any] = field(default_factory=dict)
    """LearningConfig fields the worker trains with (the rest keep their defaults)."""
    samples: Path | None = None
    """JSONL samples (learning.trainer.write_samples); None = the worker's built-in fixed pairs."""
    init_adapter: Path | None = None
    """Peft adapter folder training continues from (the served version); None = a fresh LoRA."""
    adapter_out: Path | None = None
    """Where the trained adapter goes when done (None = RUN_DIR/adapter)."""

    def argv(self, home: Path) -> list[str]:
        argv = [sys.executable, "-m", "blacksoil.learning.worker", "--run-dir", str(self.run_dir), "--steps",
                str(self.steps), "--config", json.dumps(self.config), "--home", str(home)]
        for flag, value in (("--samples", self.samples), ("--init-adapter", self.init_adapter),
                            ("--adapter-out", self.adapter_out)):
            if value is not None:
                argv += [flag, str(value)]
        return argv


class LearnerWorkload:
    """The LoRA learner worker as a process on its cores; every stop with checkpoint must end in exit 0.

    Resizing restarts it through a checkpoint (torch's thread pool is fixed at start), which loses no step. It has
    work while it holds an assignment (a WorkerJob) that has not finished or failed: a learner between rounds has
    none, and the local backend then gives its cores to serving (local.Finite). The backend's thread starts and stops
    it while the learner's thread assigns rounds, so both go through one lock."""

    kind: WorkloadKind = "learning"

    def __init__(self, name: str, run_dir: Path | None = None, steps: int | None = None,
                 config: dict[str, Any] | None = None, *, home: Path, stop_timeout_s: float = 120.0,
                 log: Path | None = None, env: dict[str, str] | None = None):
        """`run_dir`/`steps`/`config`: a first assignment (None = idle until `assign`); `config`: the LearningConfig
        fields the worker trains with; `home`: the blacksoil home whose fp32 base-model cache it uses (both from the
        caller's settings); `log`: the worker's output (None = worker.log in each assignment's run folder)."""
        self.name = name
        self.home = home
        self.log = log
        self.process = ProcessWorkload(name, "learning", [sys.executable, "-m", "blacksoil.learning.worker"],
                                       env=env, stop_timeout_s=stop_timeout_s, log=log)
        self.exit_codes: list[int] = []
        """Exit status of every stopped or finished run, oldest first."""
        self.preemptions = 0
        """Runs that a checkpointed stop ended before their assignment was done."""
        self.job: WorkerJob | None = None
        self.failed = False
        """The current assignment's worker exited with an error (see `log_path`); it gets no cores again."""
        self._lock = threading.RLock()
        if run_dir is not None:
            self.assign(WorkerJob(run_dir, steps if steps is not None else 0, dict(config or {})))

    @property
    def run_dir(self) -> Path | None:
        """Run folder of the current assignment (None = none)."""
        return self.job.run_dir if self.job is not None else None

    @property
    def log_path(self) -> Path | None:
        """Where the current run's output goes."""
        return self.process.log

    @property
    def running(self) -> bool:
        return self.process.running

    @property
    def has_work(self) -> bool:
        """An assignment that has neither finished (state 'done' at its step count) nor failed."""
        with self._lock:
            self._reap()
            return self.job is not None and not self.failed and not self._finished()

    def _finished(self) -> bool:
        """The worker reported the current job's last step done."""
        st = self.status()
        return self.job is not None and st.get("state") == "done" and int(st.get("step", 0)) >= self.job.steps

    def assign(self, job: WorkerJob | None) -> None:
        """Give the learner its next training (None = take the current one away; a running worker is then stopped
        with a checkpoint by the backend's next step). A new job only once the previous worker has exited."""
        with self._lock:
            self._reap()
            if job is not None and self.process.running:
                raise InternalError(f"learner {self.name!r} still runs {self.run_dir}; assign its next job once the "
                                    "worker has exited")
            self.job, self.failed = job, False
            if job is not None:
                self.process.argv = job.argv(self.home)
                self.process.log = self.log if self.log is not None else job.run_dir / "worker.log"

    def start(self, allocation: Allocation) -> None:
        with self._lock:
            self._reap()
            if self.job is None:
                raise InternalError(f"learner {self.name!r} has no assignment to start; assign a WorkerJob first")
            self.job.run_dir.mkdir(parents=True, exist_ok=True)
            self.process.start(allocation)

    def stop(self, checkpoint: bool = True) -> None:
        """SIGTERM: the worker finishes its step, checkpoints and exits 0. A worker that already finished its job is
        only waited for: it is on its way out with nothing left to save."""
        with self._lock:
            p = self.process.proc
            was_running = self.process.running
            if p is not None and was_running and self._finished():
                with contextlib.suppress(subprocess.TimeoutExpired):
                    p.wait(timeout=self.process.stop_timeout_s)
            self.process.stop(checkpoint=checkpoint)
            if p is not None and p.returncode is not None:
                self._exited(p.returncode)
                if was_running and self.status().get("state") == "preempted":
                    self.preemptions += 1
                if checkpoint and p.returncode != 0:
                    raise InternalError(f"learner {self.name!r} exited with {p.returncode} when asked to checkpoint; "
                                        f"see its log {self.process.log} (its progress since the last checkpoint is "
                                        "lost)")

    def resize(self, allocation: Allocation) -> None:
        """Restart on the new cores through a checkpoint (torch's thread pool cannot be resized in place)."""
        with self._lock:
            self._reap()
            if self.process.running and self.process.allocation is not None \
                    and tuple(self.process.allocation.cores) == tuple(allocation.cores):
                return
            self.stop(checkpoint=True)
            self.start(allocation)

    def status(self) -> dict[str, Any]:
        """The worker's status.json ({} before it first wrote one, or without an assignment)."""
        if self.run_dir is None or not (self.run_dir / STATUS_FILE).exists():
            return {}
        data: dict[str, Any] = json.loads((self.run_dir / STATUS_FILE).read_text())
        return data

    def records(self) -> list[dict[str, Any]]:
        """steps.jsonl of the current assignment: one record per completed step, in the order completed."""
        p = self.run_dir / STEPS_FILE if self.run_dir is not None else None
        if p is None or not p.exists():
            return []
        out = []
        for line in p.read_text().splitlines():
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:  # the worker is appending this very line; the next read gets it whole
                break
        return out

    def steps(self) -> list[int]:
        """Every step the worker completed, in the order completed, across all its runs."""
        return [int(r["step"]) for r in self.records()]

    def _exited(self, code: int) -> None:
        self.exit_codes.append(code)
        if code != 0:
            self.failed = True

    def _reap(self) -> None:
        # A worker that reached its step count (or failed) exits by itself; record it so start() can run again.
        p = self.process.proc
        if p is not None and p.poll() is not None:
            self._exited(p.returncode)
            self.process.proc = None
            self.process.allocation = None


class GatewayReplicas:
    """The embedded engine replicas of a running gateway: one replica per `threads` cores, pinned to them.

    Growing starts a replica on the new cores and waits until it answers; shrinking drains a replica (its in-flight
    requests and streams finish, nothing new is routed to it) before stopping it, so no request is dropped.
    Replicas the gateway started before the scheduler took over are adopted and pinned to the first core groups.

    The learner's hot swap changes the pool too (it starts a green replica and stops every other one), so each
    control step reconciles: replicas that are gone are forgotten, a replica someone else started is adopted onto a
    free core group once it takes new sessions (never mid-swap), and new replicas serve the adapter that the
    replicas taking new sessions serve (a promotion survives a scale-up)."""

    kind: WorkloadKind = "serving"

    def __init__(self, name: str, pool: ReplicaPool, drain_timeout_s: float = 300.0):
        if pool.model is None:
            raise ConfigError("the gateway serves upstream URLs only; the local backend can only scale embedded "
                              "replicas (start the gateway without serving.upstreams)")
        self.name = name
        self.pool = pool
        self.drain_timeout_s = drain_timeout_s
        self.cores_per_replica = pool.config.engine_threads()
        """Engine threads = cores per replica: llama.cpp's threads spin, so each gets a core of its own."""
        self.by_cores: dict[tuple[int, ...], str] = {}
        """Core group → name of the replica pinned to it."""
        self.allocation: Allocation | None = None
        """The cores serving was last given (what `reconcile` restores)."""

    def start(self, allocation: Allocation) -> None:
        groups = self.groups(allocation.cores)
        for name in [i.name for i in self.pool.info() if i.name not in self.by_cores.values()]:
            free = [g for g in groups if g not in self.by_cores]
            if free:
                pin_process(self._pid(name), free[0])
                self.by_cores[free[0]] = name
            else:
                self._remove(name)
        self.resize(allocation)

    def resize(self, allocation: Allocation) -> None:
        groups = self.groups(allocation.cores)
        self.allocation = allocation
        self._forget_gone()
        # Grow before shrinking: a move to other cores never leaves the gateway without a replica.
        for g in groups:
            if g in self.by_cores:
                continue
            routed = self._unowned_routed()
            if routed:
                pin_process(self._pid(routed[0]), g)
                self.by_cores[g] = routed[0]
            else:
                self.by_cores[g] = self.pool.start_replica(self._served_adapter(), cores=g).name
        for g in [g for g in self.by_cores if g not in groups]:
            self._remove(self.by_cores.pop(g))

    def reconcile(self) -> None:
        """Restore the last allocation after others changed the pool (a hot swap), and re-pin every replica (an
        engine the pool restarted after a crash is a new, unpinned process)."""
        if self.allocation is None:
            return
        self.resize(self.allocation)
        for g, name in self.by_cores.items():
            if name in self.pool.replicas:
                pin_process(self._pid(name), g)

    def stop(self, checkpoint: bool = True) -> None:
        """Drain and stop every replica this workload runs (serving has nothing to checkpoint; draining is how
        accepted requests still get their answers)."""
        for g in list(self.by_cores):
            self._remove(self.by_cores.pop(g))
        self.allocation = None

    @property
    def replicas(self) -> dict[tuple[int, ...], str]:
        """Core group → replica name, for logs and tests."""
        return dict(self.by_cores)

    def groups(self, cores: Sequence[int]) -> list[tuple[int, ...]]:
        """Split the allocation into one core group per replica (a remainder smaller than a replica stays idle)."""
        k = self.cores_per_replica
        cs = tuple(sorted(cores))
        if len(cs) < k:
            raise ConfigError(f"serving was given cores {list(cs)} but one replica needs {k} (serving.threads); "
                              f"allocate at least {k} cores or lower serving.threads")
        return [cs[i:i + k] for i in range(0, len(cs) - len(cs) % k, k)]

    def _forget_gone(self) -> None:
        live = {i.name for i in self.pool.info()}
        for g in [g for g, name in self.by_cores.items() if name not in live]:
            del self.by_cores[g]

    def _unowned_routed(self) -> list[str]:
        """Replicas this workload did not start that are ready and take new sessions: a swap's green once routed."""
        mine = set(self.by_cores.values())
        return [i.name for i in self.pool.info()
                if i.name not in mine and i.status == "ready" and i.accepting_new_sessions]

    def _served_adapter(self) -> AdapterVersion | None:
        """The adapter of the replicas taking new sessions (None = the base model)."""
        for i in self.pool.info():
            if i.status == "ready" and i.accepting_new_sessions:
                adapter: AdapterVersion | None = self.pool.replicas[i.name].engine.adapter
                return adapter
        return None

    def _remove(self, name: str) -> None:
        try:
            self.pool.drain(name, timeout_s=self.drain_timeout_s)
            self.pool.stop_replica(name)
        except NotFoundError:  # a hot swap stopped it meanwhile: it is gone either way
            pass

    def _pid(self, name: str) -> int:
        pid = getattr(self.pool.replicas[name].engine, "pid", None)
        if pid is None:
            raise ConfigError(f"replica {name!r} is not an embedded engine process; the local backend cannot pin it")
        return int(pid)


def pin_process(pid: int, cores: Sequence[int]) -> None:
    """Move every thread of a running process onto `cores` (new threads inherit the mask of their creator)."""
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            os.sched_setaffinity(int(tid), set(cores))
        except ProcessLookupError:  # the thread ended meanwhile
            continue
