"""Trace-driven simulator of a cluster under one scheduling policy, step by step.

Each step: observe demand, decide (timed: the decision latency), apply, measure, advance. Job progress,
checkpoints and completions advance as numpy vectors, so 24 h at 10,000 accelerators takes seconds.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from blacksoil.errors import ConfigError
from blacksoil.scheduling.baselines import KueuePolicy, KueueRequiredTopology, LyraPolicy, StaticPartition
from blacksoil.scheduling.config import SchedulingConfig
from blacksoil.scheduling.policy import Policy, UnifiedPolicy
from blacksoil.scheduling.state import Action, ClusterState, JobStatus
from blacksoil.scheduling.topology import Cluster
from blacksoil.scheduling.traces import learning_jobs, serving_demand
from blacksoil.scheduling.workloads import LearningJob, ServingDeployment

POLICIES = ("static", "kueue", "kueue_tas_required", "lyra", "unified")


@dataclass
class Scenario:
    """One workload on one cluster: every policy is run on the same scenario."""

    cfg: SchedulingConfig
    cluster: Cluster
    hours: float
    demand: np.ndarray
    """(deployments, steps): offered load in accelerators at 100 % utilization."""
    deployments: list[ServingDeployment]
    jobs: list[LearningJob]

    @property
    def steps(self) -> int:
        return int(self.demand.shape[1])

    def serving_pool_nodes(self) -> int:
        """Nodes a fixed serving pool needs for the peak at the HPA target utilization (provisioned for peak)."""
        per = self.cfg.hpa_target_utilization * self.cfg.replica_accelerators
        replicas = np.ceil(self.demand / per).sum(axis=0).max()
        acc = replicas * self.cfg.replica_accelerators
        return min(self.cluster.nodes - 1, math.ceil(acc / self.cluster.per_node))


def build_scenario(accelerators: int, hours: float, cfg: SchedulingConfig | None = None) -> Scenario:
    """The cluster, the serving demand and the learning jobs for `accelerators` and `hours`."""
    cfg = cfg or SchedulingConfig()
    if hours <= 0 or hours > 24 * 14:
        raise ConfigError(f"hours={hours} must be in (0, 336]; try 24")
    cluster = Cluster.with_accelerators(accelerators, cfg.accelerators_per_node, cfg.nodes_per_rack, cfg.racks_per_pod)
    demand = serving_demand(accelerators, hours, cfg.step_s, cfg.serving_deployments, cfg.serving_peak_fraction,
                            cfg.slo_max_utilization, cfg.seed)
    deps = [ServingDeployment(f"model-{d}", cfg.replica_accelerators, cfg.slo_max_utilization)
            for d in range(cfg.serving_deployments)]
    jobs = learning_jobs(accelerators, hours, cfg.learning_load, cfg.seed)
    return Scenario(cfg, cluster, hours, demand, deps, jobs)


def make_policy(name: str, sc: Scenario) -> Policy:
    pool = sc.serving_pool_nodes()
    if name == "static":
        return StaticPartition(sc.cfg, pool)
    if name == "kueue":
        return KueuePolicy(sc.cfg, pool * sc.cluster.per_node, sc.cluster.accelerators)
    if name == "kueue_tas_required":
        return KueueRequiredTopology(sc.cfg, pool * sc.cluster.per_node, sc.cluster.accelerators)
    if name == "lyra":
        return LyraPolicy(sc.cfg, pool)
    if name == "unified":
        return UnifiedPolicy(sc.cfg)
    raise ConfigError(f"unknown policy {name!r}; use one of {', '.join(POLICIES)} or all")


MAX_EVENTS = 500


@dataclass
class SimResult:
    policy: str
    slo_attainment: float
    goodput_acc_hours: float
    lost_acc_hours: float
    lost_work_frac: float
    utilization: float
    fragmentation: float
    queue_delay_p50_min: float
    jct_mean_h: float
    jobs_done: int
    preemptions: int
    decision_p50_ms: float
    decision_p99_ms: float
    wall_s: float
    series: dict[str, np.ndarray] = field(default_factory=dict, repr=False)
    events: list[dict[str, Any]] = field(default_factory=list, repr=False)
    """Preemptions and shrinks: hour, victim, action, reason (the latest MAX_EVENTS)."""
    placements: list[dict[str, Any]] = field(default_factory=list, repr=False)
    """Per node at the end: what is placed there (workload -> accelerators), for the console's topology view."""

    def summary(self) -> dict[str, Any]:
        return {k: (round(v, 6) if isinstance(v, float) else v) for k, v in self.__dict__.items()
                if k not in ("series", "events", "placements")}


def simulate(sc: Scenario, policy_name: str, on_step: Callable[[int], None] | None = None) -> SimResult:
    """Run one policy over the scenario and measure it."""
    t_wall = time.perf_counter()
    policy = make_policy(policy_name, sc)
    cfg = sc.cfg
    state = ClusterState(sc.cluster, sc.deployments, sc.jobs, quotas=getattr(policy, "quotas", None),
                         restart_s=cfg.restart_s, kill_grace_s=cfg.kill_grace_s, cold_start_s=cfg.replica_cold_start_s)
    n = sc.steps
    lat = np.zeros(n)
    serving_acc, learning_acc, idle = np.zeros(n), np.zeros(n), np.zeros(n)
    frag = np.zeros(n)
    ok = total = 0.0
    servings = list(state.serving.values())
    events: deque[dict[str, Any]] = deque(maxlen=MAX_EVENTS)
    for k in range(n):
        for d, s in enumerate(servings):
            s.observe(float(sc.demand[d, k]), cfg.forecast_alpha, cfg.forecast_beta)
        policy.observe(state)
        t0 = time.perf_counter()
        plan = policy.decide(state)
        lat[k] = time.perf_counter() - t0
        for dec in plan.decisions:
            if dec.action in (Action.STOP, Action.SHRINK):
                events.append({"t_h": state.now / 3600.0, "victim": dec.target, "action": str(dec.action),
                               "reason": dec.reason})
        state.apply(plan)
        for s in servings:
            cap = s.ready * s.spec.replica_accelerators * s.spec.slo_max_utilization
            ok += min(cap, s.demand)
            total += s.demand
        serving_acc[k] = sum(s.replicas * s.spec.replica_accelerators for s in servings)
        learning_acc[k] = state.jobs.alloc.sum()
        idle[k] = state.free.sum()
        frag[k] = sc.cluster.fragmentation(state.free)
        state.advance(cfg.step_s)
        if k == 0:
            # The cluster was serving before the simulation starts: the first replicas are already warm.
            for s in servings:
                s.starting.clear()
        if on_step is not None:
            on_step(k)
    j = state.jobs
    goodput = float((j.progress + j.since_ckpt).sum())
    lost = float(j.lost.sum())
    started = ~np.isnan(j.first_start)
    delays = (j.first_start[started] - j.arrival[started]) / 60.0
    done = j.status == JobStatus.DONE
    return SimResult(
        policy=policy_name,
        slo_attainment=ok / total if total else 1.0,
        goodput_acc_hours=goodput,
        lost_acc_hours=lost,
        lost_work_frac=lost / (goodput + lost) if goodput + lost else 0.0,
        utilization=float((serving_acc + learning_acc).mean() / sc.cluster.accelerators),
        fragmentation=float(frag.mean()),
        queue_delay_p50_min=float(np.median(delays)) if delays.size else 0.0,
        jct_mean_h=float(((j.finish - j.arrival)[done]).mean() / 3600.0) if done.any() else float("nan"),
        jobs_done=int(done.sum()),
        preemptions=int(j.preemptions.sum()),
        decision_p50_ms=float(np.percentile(lat, 50) * 1e3),
        decision_p99_ms=float(np.percentile(lat, 99) * 1e3),
        wall_s=time.perf_counter() - t_wall,
        series={"t_h": np.arange(n) * cfg.step_s / 3600.0, "serving": serving_acc, "learning": learning_acc,
                "idle": idle},
        events=list(events),
        placements=final_placements(state),
    )


def final_placements(state: ClusterState, max_nodes: int = 32) -> list[dict[str, Any]]:
    """What sits on each node (agent-group nodes first, then the first nodes), for display."""
    c = state.cluster
    used: dict[int, dict[str, int]] = {}
    for name, s in state.serving.items():
        for held_at in np.flatnonzero(s.held):
            used.setdefault(int(held_at), {})[name] = int(s.held[held_at]) * s.spec.replica_accelerators
    j = state.jobs
    for i, nodes in enumerate(j.nodes):
        for node, count in nodes.items():
            used.setdefault(node, {})[j.specs[i].name] = int(count)
    group_nodes = {int(n): g for g, n in state.group_node.items()}
    order = sorted(group_nodes) + [n for n in range(c.nodes) if n not in group_nodes]
    return [{"node": f"node{n}", "domain": f"pod{int(c.pod_of[n])}/rack{int(c.rack_of[n])}",
             "accelerators": c.per_node, "used": used.get(n, {}), "agent_group": group_nodes.get(n)}
            for n in order[:max_nodes]]
