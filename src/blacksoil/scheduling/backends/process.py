"""A Workload that is one real OS process pinned to the cores it is given.

Threads follow the cores (OMP/MKL/torch thread counts and `n_threads` via env, CPU affinity via
sched_setaffinity): serving and training must split cores, not time-share them (docs/design.md).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from blacksoil.contracts import Allocation, WorkloadKind
from blacksoil.errors import ConfigError, InternalError

THREAD_ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "BLACKSOIL_THREADS")


class ProcessWorkload:
    """Runs `argv` as a child process on the allocated cores; stop(checkpoint=True) sends SIGTERM and waits.

    The child is expected to write a checkpoint and exit on SIGTERM (within `stop_timeout_s`); a kill
    (checkpoint=False, or a child that overruns the timeout) sends SIGKILL and loses what it had not saved."""

    def __init__(self, name: str, kind: WorkloadKind, argv: Sequence[str], cwd: Path | None = None,
                 env: dict[str, str] | None = None, stop_timeout_s: float = 30.0, log: Path | None = None,
                 thread_env: Sequence[str] = ()):
        if not argv:
            raise ConfigError(f"workload {name!r} has an empty command; give the program and its arguments")
        self.name = name
        self.kind: WorkloadKind = kind
        self.argv = list(argv)
        self.cwd = cwd
        self.env = dict(env or {})
        self.stop_timeout_s = stop_timeout_s
        self.log = log
        self.thread_env = tuple(THREAD_ENV) + tuple(thread_env)
        """Environment variables set to the core count (e.g. BLACKSOIL_LEARNING__TORCH_THREADS,
        BLACKSOIL_SERVING__THREADS for the real learner and gateway)."""
        self.proc: subprocess.Popen[bytes] | None = None
        self.allocation: Allocation | None = None
        self.starts = 0

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self, allocation: Allocation) -> None:
        if not allocation.cores:
            raise ConfigError(f"workload {self.name!r} was given no cores; allocate at least one")
        if self.running:
            raise InternalError(f"workload {self.name!r} is already running (pid {self.proc.pid if self.proc else 0})")
        cores = tuple(allocation.cores)
        env = {**os.environ, **self.env, "BLACKSOIL_CORES": ",".join(map(str, cores))}
        for k in self.thread_env:
            env[k] = str(len(cores))
        out = self.log.open("ab") if self.log else subprocess.DEVNULL
        try:
            self.proc = subprocess.Popen(
                self.argv, cwd=self.cwd, env=env, stdout=out, stderr=subprocess.STDOUT,
                preexec_fn=_pin(cores) if sys.platform.startswith("linux") else None,
            )
        finally:
            if self.log:
                out.close()  # type: ignore[union-attr]
        self.allocation = allocation
        self.starts += 1

    def stop(self, checkpoint: bool = True) -> None:
        p = self.proc
        if p is None:
            return
        if p.poll() is None:
            p.send_signal(signal.SIGTERM if checkpoint else signal.SIGKILL)
            try:
                p.wait(timeout=self.stop_timeout_s)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        self.proc = None
        self.allocation = None

    def resize(self, allocation: Allocation) -> None:
        """Restart on the new cores through a checkpoint (thread pools cannot be resized in place)."""
        if self.allocation is not None and tuple(allocation.cores) == tuple(self.allocation.cores) and self.running:
            return
        self.stop(checkpoint=True)
        self.start(allocation)


def _pin(cores: tuple[int, ...]):  # type: ignore[no-untyped-def]
    def pin() -> None:
        os.sched_setaffinity(0, cores)

    return pin
