"""The local backend: the unified policy on one machine, with CPU cores as the accelerators.

Serving replicas and learner workers are real processes (anything implementing contracts.Workload);
each step observes serving demand, asks the same Policy the simulator uses, and starts, checkpoints,
stops or resizes the workloads on disjoint core sets.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

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


class LocalBackend:
    """Drives one serving workload and learner workloads on this machine's cores with the unified policy.

    `demand()` returns the serving load in cores at 100 % utilization (e.g. busy engine slots from the
    gateway's metrics). Each learner is elastic between 1 core and all cores but one; serving keeps one."""

    def __init__(self, serving: Workload, learners: Sequence[Workload], demand: Callable[[], float],
                 cores: Sequence[int] | None = None, cfg: SchedulingConfig | None = None,
                 policy: Policy | None = None, learner_priority: int = 100):
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
        self.history: list[StepRecord] = []
        self._serving_cores: tuple[int, ...] = ()
        self._learner_cores: dict[str, tuple[int, ...]] = {}

    def step(self) -> StepRecord:
        """Observe demand, decide, and carry the decisions out on the processes."""
        st = self.state
        st.advance(max(0.0, time.monotonic() - self.t0 - st.now))
        d = float(self.demand())
        s = st.serving[self.serving.name]
        s.observe(d, self.cfg.forecast_alpha, self.cfg.forecast_beta)
        self.policy.observe(st)
        plan = self.policy.decide(st)
        st.apply(plan)
        self._execute(plan)
        st.advance(0.0)  # stops were synchronous (checkpoint written): their cores are free now
        rec = StepRecord(time.monotonic() - self.t0, d, self._serving_cores, dict(self._learner_cores),
                         list(plan.decisions))
        self.history.append(rec)
        return rec

    def _execute(self, plan: Plan) -> None:
        # Release before taking: stops and shrinks first, so no core is ever handed out twice.
        for d in plan:
            if d.action is Action.STOP:
                self.learners[d.target].stop(checkpoint=d.checkpoint)
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
            return
        if self._serving_cores:
            self.serving.resize(Allocation(cores=cores))
        else:
            self.serving.start(Allocation(cores=cores))
        self._serving_cores = cores

    def close(self) -> None:
        """Checkpoint and stop everything."""
        for name, w in self.learners.items():
            w.stop(checkpoint=True)
            self._learner_cores.pop(name, None)
        self.serving.stop(checkpoint=True)
        self._serving_cores = ()
