"""The local backend: the unified policy on one machine, with CPU cores as the accelerators.

Serving replicas and learner workers are real processes (anything implementing contracts.Workload);
each step observes serving demand, asks the same Policy the simulator uses, and starts, checkpoints,
stops or resizes the workloads on disjoint core sets. A learner that can run out of work (Finite: a learner
between rounds, or whose worker finished) gives its cores back and leaves the queue until it has work again.
"""

from __future__ import annotations

import math
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from blacksoil.contracts import Allocation, Workload
from blacksoil.errors import ConfigError
from blacksoil.scheduling.config import SchedulingConfig
from blacksoil.scheduling.policy import Policy, UnifiedPolicy
from blacksoil.scheduling.state import Action, ClusterState, Decision, JobStatus, Plan
from blacksoil.scheduling.topology import Cluster
from blacksoil.scheduling.workloads import LearningJob, ServingDeployment


@dataclass
class StepRecord:
    """What one control step saw and did (for logs, tests and the console)."""

    at: float
    demand: float
    serving_cores: tuple[int, ...]
    learner_cores: dict[str, tuple[int, ...]]
    decisions: list[Decision] = field(default_factory=list)


@runtime_checkable
class Reconciling(Protocol):
    """A serving workload that others may change too (a hot swap replaces replicas): each step restores it."""

    def reconcile(self) -> None:
        """Make what runs match the last allocation again."""
        ...


@runtime_checkable
class Finite(Protocol):
    """A workload that can run out of work (plain workloads always have some)."""

    @property
    def has_work(self) -> bool:
        """Whether it has something to do now (False: between assignments, finished, or failed)."""
        ...

    @property
    def running(self) -> bool:
        """Whether its process is alive."""
        ...


class LocalBackend:
    """Drives one serving workload and learner workloads on this machine's cores with the unified policy.

    `demand()` returns the serving load in cores at 100 % utilization (e.g. busy engine slots from the
    gateway's metrics). Each learner is elastic between 1 core and all cores but one; serving keeps one."""

    def __init__(self, serving: Workload, learners: Sequence[Workload], demand: Callable[[], float],
                 cores: Sequence[int] | None = None, cfg: SchedulingConfig | None = None,
                 policy: Policy | None = None, learner_priority: int = 100, keep_steps: int = 10_000):
        """`keep_steps`: how many recent StepRecords `history` keeps (a long-running platform must stay bounded)."""
        self.cores = tuple(sorted(cores if cores is not None else os.sched_getaffinity(0)))
        if len(self.cores) < 2:
            raise ConfigError(f"local backend needs at least 2 cores, got {list(self.cores)}; "
                              "serving and learning must not share a core")
        if serving.kind != "serving" or any(w.kind != "learning" for w in learners):
            raise ConfigError("local backend takes one workload of kind 'serving' and learners of kind 'learning'")
        self.cfg = cfg or SchedulingConfig(replica_cold_start_s=0.0, restart_s=0.0, kill_grace_s=0.0)
        self.policy = policy or UnifiedPolicy(self.cfg)
        self.serving = serving
        self.learners = {w.name: w for w in learners}
        self.demand = demand
        n = len(self.cores)
        cluster = Cluster(nodes=1, accelerators_per_node=n, nodes_per_rack=1, racks_per_pod=1)
        deployment = ServingDeployment(serving.name, 1, self.cfg.slo_max_utilization, min_replicas=1)
        # Local checkpoints are written inside stop(); the state frees the cores on the next step.
        jobs = [LearningJob(w.name, size=n - 1, min_size=1, work_acc_h=1e12, priority=learner_priority,
                            checkpoint_interval_s=math.inf, checkpoint_cost_s=0.0) for w in learners]
        self.state = ClusterState(cluster, [deployment], jobs, restart_s=self.cfg.restart_s,
                                  kill_grace_s=self.cfg.kill_grace_s, cold_start_s=self.cfg.replica_cold_start_s)
        self.state.keep_log = True
        self.t0 = time.monotonic()
        self.history: deque[StepRecord] = deque(maxlen=keep_steps)
        self._history_lock = threading.Lock()  # a control thread appends while the console reads
        self._serving_cores: tuple[int, ...] = ()
        self._learner_cores: dict[str, tuple[int, ...]] = {}

    def step(self) -> StepRecord:
        """Observe demand, decide, and carry the decisions out on the processes."""
        st = self.state
        st.advance(max(0.0, time.monotonic() - self.t0 - st.now))
        released = self._sync_learners()
        d = float(self.demand())
        s = st.serving[self.serving.name]
        s.observe(d, self.cfg.forecast_alpha, self.cfg.forecast_beta)
        self.policy.observe(st)
        plan = self.policy.decide(st)
        st.apply(plan)
        self._execute(plan)
        st.advance(0.0)  # stops were synchronous (checkpoint written): their cores are free now
        rec = StepRecord(time.monotonic() - self.t0, d, self._serving_cores, dict(self._learner_cores),
                         released + list(plan.decisions))
        with self._history_lock:
            self.history.append(rec)
        return rec

    def recent(self, n: int | None = None) -> list[StepRecord]:
        """The latest `n` step records (all kept ones for None), oldest first; safe while another thread steps."""
        with self._history_lock:
            out = list(self.history)
        return out if n is None else out[-n:]

    def _sync_learners(self) -> list[Decision]:
        """Learners without work give their cores back and leave the queue; learners with work join it again.

        A Finite learner whose process ended (its work finished, or it failed) while the state still ran it is
        released too, so a new assignment starts a new process instead of counting on a dead one."""
        st, j = self.state, self.state.jobs
        released: list[Decision] = []
        for name, w in self.learners.items():
            if not isinstance(w, Finite):
                continue
            i = j.idx(name)
            has_work = w.has_work
            if j.status[i] == JobStatus.RUNNING and (not has_work or not w.running):
                why = "no work left: round finished or called off" if not has_work else \
                    "its process ended; queued again"
                plan = Plan([Decision(Action.STOP, name, why, dict(j.nodes[i]))])
                st.apply(plan)
                self._execute(plan)
                st.advance(0.0)
                released += plan.decisions
            if not has_work and j.status[i] == JobStatus.QUEUED:
                st.withdraw(name)
            elif has_work and j.status[i] == JobStatus.WAITING:
                st.submit(name)
        return released

    def _execute(self, plan: Plan) -> None:
        # Release before taking: stops and shrinks first, so no core is ever handed out twice.
        for d in plan:
            if d.action is Action.STOP:
                try:
                    self.learners[d.target].stop(checkpoint=d.checkpoint)
                finally:  # a stop that reports a failure still ended the process: its cores are free either way
                    self._learner_cores.pop(d.target, None)
        serving_n, learner_n = self._counts_after(plan)
        cores = list(self.cores)
        self._set_serving(tuple(cores[:serving_n]))
        nxt = serving_n
        for name, k in learner_n.items():
            want = tuple(cores[nxt:nxt + k])
            nxt += k
            w = self.learners[name]
            if self._learner_cores.get(name) != want:
                if name in self._learner_cores:
                    w.resize(Allocation(cores=want))
                else:
                    w.start(Allocation(cores=want))
                self._learner_cores[name] = want

    def _counts_after(self, plan: Plan) -> tuple[int, dict[str, int]]:
        st = self.state
        serving_n = st.serving[self.serving.name].replicas
        j = st.jobs
        learner_n: dict[str, int] = {}
        for i, spec in enumerate(j.specs):
            if j.status[i] == JobStatus.RUNNING:
                learner_n[spec.name] = int(j.alloc[i])
            elif j.status[i] == JobStatus.DRAINING:
                kept = int(j.alloc[i]) - sum(j.release_nodes[i].values())
                if kept > 0:
                    learner_n[spec.name] = kept
        return serving_n, learner_n

    def _set_serving(self, cores: tuple[int, ...]) -> None:
        if cores == self._serving_cores:
            if cores and isinstance(self.serving, Reconciling):
                self.serving.reconcile()
            return
        if self._serving_cores:
            self.serving.resize(Allocation(cores=cores))
        else:
            self.serving.start(Allocation(cores=cores))
        self._serving_cores = cores

    def free_cores(self) -> tuple[int, ...]:
        """Cores neither serving nor any learner holds now (what a short job beside them, such as the eval gate's
        scoring engine, may use without slowing serving)."""
        held = set(self._serving_cores).union(*self._learner_cores.values())
        return tuple(c for c in self.cores if c not in held)

    def close(self, keep_serving: bool = False) -> None:
        """Checkpoint and stop every learner, and serving too unless `keep_serving` (a gateway that shuts down
        by itself afterwards stops its own replicas)."""
        for name, w in self.learners.items():
            w.stop(checkpoint=True)
            self._learner_cores.pop(name, None)
        if not keep_serving:
            self.serving.stop(checkpoint=True)
            self._serving_cores = ()
