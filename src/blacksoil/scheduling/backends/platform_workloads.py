"""The platform's real workloads for the local backend: the learner worker process and the gateway's replicas.

LearnerWorkload runs `blacksoil.learning.worker` (SIGTERM = checkpoint and exit); GatewayReplicas grows and
shrinks a running gateway's ReplicaPool in place, one engine replica per core group, draining before a stop.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from blacksoil.contracts import Allocation, WorkloadKind
from blacksoil.errors import ConfigError, InternalError
from blacksoil.scheduling.backends.process import ProcessWorkload
from blacksoil.serving.pool import ReplicaPool


class LearnerWorkload:
    """The LoRA learner worker as a process on its cores; every stop with checkpoint must end in exit 0.

    Resizing restarts it through a checkpoint (torch's thread pool is fixed at start), which loses no step."""

    kind: WorkloadKind = "learning"

    def __init__(self, name: str, run_dir: Path, steps: int, config: dict[str, Any] | None = None, *, home: Path,
                 stop_timeout_s: float = 120.0, log: Path | None = None, env: dict[str, str] | None = None):
        """`config`: the LearningConfig fields the worker trains with (the rest keep their defaults); `home`: the
        blacksoil home whose fp32 base-model cache it uses. Both come from the caller's settings."""
        self.name = name
        self.run_dir = run_dir
        argv = [sys.executable, "-m", "blacksoil.learning.worker", "--run-dir", str(run_dir), "--steps", str(steps),
                "--config", json.dumps(config or {}), "--home", str(home)]
        self.process = ProcessWorkload(name, "learning", argv, env=env, stop_timeout_s=stop_timeout_s, log=log)
        self.exit_codes: list[int] = []
        """Exit status of every stopped or finished run, oldest first."""

    @property
    def running(self) -> bool:
        return self.process.running

    def start(self, allocation: Allocation) -> None:
        self._reap()
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.process.start(allocation)

    def stop(self, checkpoint: bool = True) -> None:
        p = self.process.proc
        self.process.stop(checkpoint=checkpoint)
        if p is not None and p.returncode is not None:
            self.exit_codes.append(p.returncode)
            if checkpoint and p.returncode != 0:
                raise InternalError(f"learner {self.name!r} exited with {p.returncode} when asked to checkpoint; "
                                    f"see its log {self.process.log} (its progress since the last checkpoint is lost)")

    def resize(self, allocation: Allocation) -> None:
        """Restart on the new cores through a checkpoint (torch's thread pool cannot be resized in place)."""
        self._reap()
        if self.process.running and self.process.allocation is not None \
                and tuple(self.process.allocation.cores) == tuple(allocation.cores):
            return
        self.stop(checkpoint=True)
        self.process.start(allocation)

    def status(self) -> dict[str, Any]:
        """The worker's status.json ({} before it first wrote one)."""
        p = self.run_dir / "status.json"
        data: dict[str, Any] = json.loads(p.read_text()) if p.exists() else {}
        return data

    def steps(self) -> list[int]:
        """Every step the worker completed, in the order completed, across all its runs."""
        p = self.run_dir / "steps.jsonl"
        return [int(json.loads(x)["step"]) for x in p.read_text().splitlines()] if p.exists() else []

    def _reap(self) -> None:
        # A worker that reached its step count exits by itself; record it so start() can run again.
        p = self.process.proc
        if p is not None and p.poll() is not None:
            self.exit_codes.append(p.returncode)
            self.process.proc = None
            self.process.allocation = None


class GatewayReplicas:
    """The embedded engine replicas of a running gateway: one replica per `threads` cores, pinned to them.

    Growing starts a replica on the new cores and waits until it answers; shrinking drains a replica (its in-flight
    requests and streams finish, nothing new is routed to it) before stopping it, so no request is dropped.
    Replicas the gateway started before the scheduler took over are adopted and pinned to the first core groups."""

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
        # Grow before shrinking: a move to other cores never leaves the gateway without a replica.
        for g in groups:
            if g not in self.by_cores:
                self.by_cores[g] = self.pool.start_replica(cores=g).name
        for g in [g for g in self.by_cores if g not in groups]:
            self._remove(self.by_cores.pop(g))

    def stop(self, checkpoint: bool = True) -> None:
        """Drain and stop every replica this workload runs (serving has nothing to checkpoint; draining is how
        accepted requests still get their answers)."""
        for g in list(self.by_cores):
            self._remove(self.by_cores.pop(g))

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

    def _remove(self, name: str) -> None:
        self.pool.drain(name, timeout_s=self.drain_timeout_s)
        self.pool.stop_replica(name)

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
