"""Replica counts of ServingDeployments on Kubernetes, decided by the unified policy from the gateway's demand.

Each operator step scrapes the deployment's gateway `/metrics` (GatewayDemand, as the local backend does), feeds
the demand to the deployment's forecaster and asks the same UnifiedPolicy the simulator and the local and Ray
backends use for its target: forecast plus adaptive headroom, scaled up at once, scaled down only to the highest
target of the stabilization window. The spec only bounds it (minReplicas..maxReplicas). The forecasters live in
the operator's memory: a restarted operator starts them afresh from the next scrape.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import numpy as np

from blacksoil.scheduling.config import SchedulingConfig
from blacksoil.scheduling.policy import UnifiedPolicy
from blacksoil.scheduling.state import ClusterState, ServingState
from blacksoil.scheduling.topology import Cluster
from blacksoil.scheduling.workloads import LearningJob, ServingDeployment


def bounds(spec: dict[str, Any]) -> tuple[int, int]:
    """(minReplicas, maxReplicas) of a ServingDeployment spec."""
    return int(spec.get("minReplicas", 1)), int(spec["maxReplicas"])


def learning_jobs(items: list[dict[str, Any]]) -> list[LearningJob]:
    """The namespace's LearningJobs as the policy sees them (their checkpoint time sets its look-ahead)."""
    out = []
    for j in items:
        size = max(1, int(j["spec"]["size"]))
        out.append(LearningJob(j["metadata"]["name"], size, 1e12, min(size, int(j["spec"].get("minSize", size))),
                               int(j["spec"].get("priority", 100)),
                               checkpoint_cost_s=float(j["spec"].get("checkpointSeconds", 30))))
    return out


class DemandScaler:
    """One forecaster per ServingDeployment and the unified policy that turns demand into a replica target."""

    def __init__(self, cfg: SchedulingConfig) -> None:
        self.cfg = cfg
        self.policy = UnifiedPolicy(cfg)
        self.states: dict[str, ServingState] = {}
        self.t0 = time.monotonic()
        self._lock = threading.Lock()  # kopf runs timers and change handlers of different objects in threads

    def target(self, key: str, spec: dict[str, Any], cluster: Cluster, held: np.ndarray, free: np.ndarray,
               jobs: list[LearningJob], demand: float) -> int:
        """Replicas for deployment `key` given `demand` (accelerators at 100 % utilization) now, within its bounds.

        `held`: its replicas per node now; `free`: free accelerators per node."""
        lo, hi = bounds(spec)
        dep = ServingDeployment(key, int(spec.get("replicaAccelerators", 1)),
                                float(spec.get("sloMaxUtilization", self.cfg.slo_max_utilization)), min_replicas=lo)
        with self._lock:
            s = self.states.get(key)
            if s is None:
                s = self.states[key] = ServingState(dep, held)
            s.spec, s.held, s.replicas = dep, held, int(held.sum())
            s.observe(demand, self.cfg.forecast_alpha, self.cfg.forecast_beta)
            state = ClusterState(cluster, [dep], jobs, restart_s=self.cfg.restart_s,
                                 kill_grace_s=self.cfg.kill_grace_s, cold_start_s=self.cfg.replica_cold_start_s)
            state.serving[key] = s
            state.free = free.copy()
            state.now = time.monotonic() - self.t0
            self.policy.observe(state)
            return min(hi, self.policy.target_replicas(s, state))

    def forget(self, key: str) -> None:
        """Drop a deleted deployment's forecaster."""
        with self._lock:
            self.states.pop(key, None)
