"""Baseline policies modelled on how the real systems behave, for the simulator's comparisons.

Static partition (fixed pools), Kueue (cohort borrowing, eviction of borrowers, partial admission, no
elastic growth) and Lyra (idle inference servers loaned to training, elastic shrink on reclaim).
"""

from __future__ import annotations

import math

import numpy as np

from blacksoil.scheduling.config import SchedulingConfig
from blacksoil.scheduling.policy import Policy
from blacksoil.scheduling.state import Action, ClusterState, Decision, JobStatus, Plan, ServingState
from blacksoil.scheduling.topology import Level
from blacksoil.scheduling.workloads import Quota


class HPAServing:
    """Reactive serving autoscaling as Kubernetes' HPA does it: current load over a target utilization."""

    cfg: SchedulingConfig

    def desired_replicas(self, s: ServingState, state: ClusterState) -> int:
        per_replica = self.cfg.hpa_target_utilization * s.spec.replica_accelerators
        return max(s.spec.min_replicas, math.ceil(s.demand / per_replica))


class StaticPartition(HPAServing, Policy):
    """Fixed pools: serving sized for its peak, learning gets the rest and nothing more."""

    name = "static"
    elastic_growth = False

    def __init__(self, cfg: SchedulingConfig | None, serving_nodes: int):
        super().__init__(cfg)
        self.serving_nodes = serving_nodes

    def serving_mask(self, state: ClusterState) -> np.ndarray:
        return np.arange(state.cluster.nodes) < self.serving_nodes

    def learning_free(self, state: ClusterState, free: np.ndarray) -> np.ndarray:
        return np.where(self.serving_mask(state), 0, free)

    def decide(self, state: ClusterState) -> Plan:
        plan = Plan()
        free = state.free.copy()
        self._scale_serving(state, free, plan)  # a shortfall stays a shortfall: the pools are fixed
        self._lend(state, free, plan)
        return plan

    def _reclaim(self, state: ClusterState, free: np.ndarray, shortfall: int, plan: Plan) -> None:
        return None


class KueuePolicy(HPAServing, Policy):
    """Kueue: two ClusterQueues in a cohort; learning borrows serving's unused nominal quota and is evicted
    (whole workload, pods killed after the grace period, no coordinated checkpoint: kueue#477) when serving
    reclaims it. Victims: lowest priority, then the most recently admitted. Partial admission at the job's
    minimum parallelism, but an admitted job never grows (elastic jobs: kueue#77)."""

    name = "kueue"
    elastic_growth = False

    def __init__(self, cfg: SchedulingConfig | None, serving_nominal: int, total: int):
        super().__init__(cfg)
        self.quotas = {"serving": Quota(serving_nominal), "learning": Quota(total - serving_nominal)}

    def _reclaim(self, state: ClusterState, free: np.ndarray, shortfall: int, plan: Plan) -> None:
        coming = state.draining_release()
        if coming >= shortfall:
            return
        need = shortfall - coming
        j = state.jobs
        usage = state.usage()
        if usage["learning"] <= self.quotas["learning"].nominal:
            return  # learning is within its own quota: Kueue does not reclaim from it
        run = np.flatnonzero(j.status == JobStatus.RUNNING)
        order = run[np.lexsort((run, -j.started[run], j.priority[run]))]
        for i in order:
            if need <= 0:
                return
            plan.add(self.preempt(state, int(i), False,
                                  f"reclaimWithinCohort: serving needs {shortfall} acc; evict (prio {j.priority[i]})"))
            need -= int(j.alloc[i])


class KueueRequiredTopology(KueuePolicy):
    """Kueue with Topology-Aware Scheduling in *required* mode at the pod (spine) level: a gang waits for room
    inside one pod instead of spreading across the cluster. The strongest Kueue configuration modelled here."""

    name = "kueue_tas_required"
    max_level = Level.POD


class LyraPolicy(HPAServing, Policy):
    """Lyra (EuroSys '23): idle whole inference servers are loaned to training; on reclaim, elastic jobs on
    loaned servers scale in first, then the fewest non-elastic jobs there are preempted."""

    name = "lyra"

    def __init__(self, cfg: SchedulingConfig | None, serving_nodes: int):
        super().__init__(cfg)
        self.serving_nodes = serving_nodes

    def serving_mask(self, state: ClusterState) -> np.ndarray:
        return np.arange(state.cluster.nodes) < self.serving_nodes

    def learning_free(self, state: ClusterState, free: np.ndarray) -> np.ndarray:
        loanable = ~self.serving_mask(state) | (free == state.cluster.per_node)
        return np.where(loanable, free, 0)

    def _reclaim(self, state: ClusterState, free: np.ndarray, shortfall: int, plan: Plan) -> None:
        coming = state.draining_release()
        if coming >= shortfall:
            return
        need = shortfall - coming
        j = state.jobs
        pool = self.serving_nodes
        run = np.flatnonzero(j.status == JobStatus.RUNNING)
        on_loan = {int(i): sum(c for n, c in j.nodes[i].items() if n < pool) for i in run}
        loaned = [i for i, c in on_loan.items() if c > 0]
        for i in sorted(loaned, key=lambda i: (-on_loan[i], i)):
            if need <= 0:
                return
            spare = min(on_loan[i], int(j.alloc[i] - j.min_size[i]))
            if spare > 0:
                cut = min(spare, need)
                take = _cap({n: c for n, c in j.nodes[i].items() if n < pool}, cut)
                plan.add(Decision(Action.SHRINK, j.specs[i].name, f"reclaim loaned servers: scale in by {cut}", take))
                need -= cut
        shrunk = {d.target for d in plan}
        for i in sorted(loaned, key=lambda i: (-on_loan[i], i)):
            if need <= 0:
                return
            if j.specs[i].name in shrunk:
                continue
            why = f"reclaim loaned servers: preempt non-elastic job ({on_loan[i]} acc on loan)"
            plan.add(self.preempt(state, i, False, why))
            need -= on_loan[i]


def _cap(nodes: dict[int, int], cap: int) -> dict[int, int]:
    out: dict[int, int] = {}
    for n, c in sorted(nodes.items(), key=lambda kv: (kv[1], kv[0])):
        k = min(c, cap)
        if k <= 0:
            break
        out[n] = k
        cap -= k
    return out
