"""Run-time state of a cluster under the unified scheduler, and the decisions that change it.

Policies read a ClusterState and return a Plan (a list of Decisions, each with its reason); only
`apply` and `advance` change the state (plus `withdraw`/`submit`, with which a backend says a job has no work or
has work again), so the same policy drives the simulator and the real backends.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from enum import IntEnum, StrEnum

import numpy as np

from blacksoil.errors import InternalError, NotFoundError
from blacksoil.scheduling.topology import Cluster, Level, Placement
from blacksoil.scheduling.workloads import AgentGroup, LearningJob, Quota, ServingDeployment


class JobStatus(IntEnum):
    WAITING = 0  # not submitted yet
    QUEUED = 1
    RUNNING = 2
    DRAINING = 3  # being stopped or shrunk; holds its accelerators until release_at
    DONE = 4


class Action(StrEnum):
    SCALE_UP = "scale_up"
    SCALE_DOWN = "scale_down"
    START = "start"
    GROW = "grow"
    SHRINK = "shrink"
    STOP = "stop"
    PLACE_GROUP = "place_group"


@dataclass(frozen=True)
class Decision:
    """One change to the cluster, with the reason the policy took it."""

    action: Action
    target: str
    reason: str
    nodes: dict[int, int] = field(default_factory=dict)
    """Accelerators (or replica units for serving) per node that are taken or released."""
    checkpoint: bool = True
    """STOP/SHRINK: write a checkpoint before releasing (no work lost) or kill now."""
    level: Level = Level.NODE


@dataclass
class Plan:
    decisions: list[Decision] = field(default_factory=list)

    def add(self, d: Decision) -> None:
        self.decisions.append(d)

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(self.decisions)

    def __len__(self) -> int:
        return len(self.decisions)


@dataclass
class ServingState:
    """Replicas of one deployment, its observed demand and its forecaster's state."""

    spec: ServingDeployment
    held: np.ndarray
    """Replica units per node (placed, ready or starting)."""
    starting: deque[tuple[float, int]] = field(default_factory=deque)
    """(ready time, replicas) of replicas still warming up."""
    demand: float = 0.0
    """Latest observed offered load, in accelerators at 100 % utilization."""
    level: float | None = None
    trend: float = 0.0
    err_var: float = 0.0
    hpa_history: deque[tuple[float, int]] = field(default_factory=deque)
    """(time, desired replicas) seen inside the HPA scale-down window."""

    replicas: int = 0
    """Replicas placed (ready or starting): the sum of `held`, kept in step by ClusterState.apply."""

    @property
    def ready(self) -> int:
        return self.replicas - sum(c for _, c in self.starting)

    def observe(self, demand: float, alpha: float, beta: float) -> None:
        """Record one demand sample and update the Holt level/trend and the forecast-error variance."""
        if self.level is None:
            self.level, self.trend = demand, 0.0
        else:
            predicted = self.level + self.trend
            err = demand - predicted
            self.err_var = 0.9 * self.err_var + 0.1 * err * err
            new_level = alpha * demand + (1 - alpha) * predicted
            self.trend = beta * (new_level - self.level) + (1 - beta) * self.trend
            self.level = new_level
        self.demand = demand

    def forecast(self, steps: float) -> float:
        """Holt forecast `steps` steps ahead (never below zero)."""
        if self.level is None:
            return self.demand
        return max(0.0, self.level + self.trend * steps)


class JobTable:
    """Learning jobs as parallel numpy columns, so progress advances for all jobs in one vector step."""

    def __init__(self, jobs: list[LearningJob]):
        self.specs = list(jobs)
        self.index = {j.name: i for i, j in enumerate(jobs)}
        n = len(jobs)
        self.size = np.array([j.size for j in jobs], dtype=np.int64)
        self.min_size = np.array([j.smallest for j in jobs], dtype=np.int64)
        self.priority = np.array([j.priority for j in jobs], dtype=np.int64)
        self.work = np.array([j.work_acc_h for j in jobs], dtype=np.float64)
        self.ckpt_interval = np.array([j.checkpoint_interval_s for j in jobs], dtype=np.float64)
        self.ckpt_cost = np.array([j.checkpoint_cost_s for j in jobs], dtype=np.float64)
        self.arrival = np.array([j.arrival_s for j in jobs], dtype=np.float64)
        self.status = np.zeros(n, dtype=np.int64)
        self.alloc = np.zeros(n, dtype=np.int64)
        self.eff = np.ones(n, dtype=np.float64)
        self.progress = np.zeros(n, dtype=np.float64)  # committed by a checkpoint, acc-h
        self.since_ckpt = np.zeros(n, dtype=np.float64)  # done since the last checkpoint, acc-h
        self.lost = np.zeros(n, dtype=np.float64)
        self.last_ckpt = np.zeros(n, dtype=np.float64)
        self.pause_until = np.zeros(n, dtype=np.float64)
        self.release_at = np.full(n, np.inf)
        self.started = np.full(n, np.nan)  # start of the current run (Kueue evicts the newest first)
        self.first_start = np.full(n, np.nan)
        self.finish = np.full(n, np.nan)
        self.preemptions = np.zeros(n, dtype=np.int64)
        self.resized_at = np.full(n, -np.inf)  # last start, grow or shrink: growth waits a cool-down after it
        self.nodes: list[dict[int, int]] = [{} for _ in range(n)]
        self.release_nodes: list[dict[int, int]] = [{} for _ in range(n)]

    def __len__(self) -> int:
        return len(self.specs)

    def idx(self, name: str) -> int:
        try:
            return self.index[name]
        except KeyError:
            raise NotFoundError(f"learning job {name!r} is unknown; submit it before scheduling it") from None

    def remaining(self, i: int) -> float:
        return float(self.work[i] - self.progress[i] - self.since_ckpt[i])


class ClusterState:
    """Everything a policy looks at: free accelerators per node, serving replicas, learning jobs, groups."""

    def __init__(
        self,
        cluster: Cluster,
        deployments: list[ServingDeployment],
        jobs: list[LearningJob],
        groups: list[AgentGroup] | None = None,
        quotas: dict[str, Quota] | None = None,
        restart_s: float = 120.0,
        kill_grace_s: float = 30.0,
        cold_start_s: float = 60.0,
    ):
        self.cluster = cluster
        self.now = 0.0
        self.free = cluster.empty()
        self.serving = {d.name: ServingState(d, np.zeros(cluster.nodes, dtype=np.int64)) for d in deployments}
        self.jobs = JobTable(jobs)
        self.groups = {g.name: g for g in groups or []}
        self.group_node: dict[str, int] = {}
        self.quotas = quotas or {}
        self.restart_s = restart_s
        self.kill_grace_s = kill_grace_s
        self.cold_start_s = cold_start_s
        self.log: list[tuple[float, Decision]] = []
        self.keep_log = False

    # ---- read-only views the policies use ----

    def usage(self) -> dict[str, int]:
        """Accelerators in use per quota queue (`serving`, `learning`)."""
        serving = sum(s.replicas * s.spec.replica_accelerators for s in self.serving.values())
        serving += sum(self.groups[g].accelerators for g in self.group_node)
        j = self.jobs
        return {"serving": serving, "learning": int(j.alloc.sum())}

    def queued(self) -> np.ndarray:
        """Indices of queued jobs: highest priority first, then oldest."""
        j = self.jobs
        q = np.flatnonzero(j.status == JobStatus.QUEUED)
        return q[np.lexsort((q, j.arrival[q], -j.priority[q]))]

    def draining_release(self) -> int:
        """Accelerators that draining jobs will hand back once their checkpoint or grace period ends."""
        j = self.jobs
        return sum(sum(j.release_nodes[i].values()) for i in np.flatnonzero(j.status == JobStatus.DRAINING))

    # ---- the only mutators ----

    def apply(self, plan: Plan) -> None:
        """Carry out a plan the policy produced for this state."""
        j = self.jobs
        for d in plan:
            if self.keep_log:
                self.log.append((self.now, d))
            if d.action in (Action.SCALE_UP, Action.SCALE_DOWN):
                s = self.serving[d.target]
                unit = s.spec.replica_accelerators
                count = sum(d.nodes.values())
                for n, c in d.nodes.items():
                    if d.action is Action.SCALE_UP:
                        s.held[n] += c
                        self.free[n] -= c * unit
                    else:
                        s.held[n] -= c
                        self.free[n] += c * unit
                s.replicas += count if d.action is Action.SCALE_UP else -count
                if d.action is Action.SCALE_UP:
                    s.starting.append((self.now + self.cold_start_s, count))
                else:
                    self._drop_starting(s, count)
            elif d.action is Action.PLACE_GROUP:
                (node,) = d.nodes
                self.group_node[d.target] = node
                self.free[node] -= d.nodes[node]
            else:
                self._apply_job(j.idx(d.target), d)
        assert (self.free >= 0).all(), "a plan over-committed a node"

    def _drop_starting(self, s: ServingState, count: int) -> None:
        # Removing replicas takes warming ones first: they serve nothing yet.
        while count > 0 and s.starting:
            t, c = s.starting.pop()
            if c > count:
                s.starting.append((t, c - count))
                return
            count -= c

    def _apply_job(self, i: int, d: Decision) -> None:
        j = self.jobs
        j.resized_at[i] = self.now
        if d.action in (Action.START, Action.GROW):
            for n, c in d.nodes.items():
                self.free[n] -= c
                j.nodes[i][n] = j.nodes[i].get(n, 0) + c
            if d.action is Action.START:
                j.status[i] = JobStatus.RUNNING
                j.started[i] = self.now
                j.last_ckpt[i] = self.now
                if math.isnan(j.first_start[i]):
                    j.first_start[i] = self.now
                j.eff[i] = _eff(d.level)
            else:
                # Growing goes through a checkpoint and a restart at the new size.
                j.progress[i] += j.since_ckpt[i]
                j.since_ckpt[i] = 0.0
                j.last_ckpt[i] = self.now
                j.eff[i] = min(j.eff[i], _eff(d.level))
            j.alloc[i] += sum(d.nodes.values())
            grow_ckpt = j.ckpt_cost[i] if d.action is Action.GROW else 0.0
            j.pause_until[i] = self.now + self.restart_s + grow_ckpt
            return
        # STOP or SHRINK: accelerators stay held until the checkpoint (or the kill's grace period) ends.
        release = dict(j.nodes[i]) if d.action is Action.STOP else dict(d.nodes)
        if d.checkpoint:
            j.release_at[i] = self.now + j.ckpt_cost[i]
        else:
            j.lost[i] += j.since_ckpt[i]
            j.since_ckpt[i] = 0.0
            j.release_at[i] = self.now + self.kill_grace_s
        j.release_nodes[i] = release
        j.status[i] = JobStatus.DRAINING
        j.preemptions[i] += d.action is Action.STOP

    def withdraw(self, name: str) -> None:
        """Take a job that holds no accelerators out of the queue: it has no work now (a learner between rounds),
        so no policy may start it or keep capacity for it until it is submitted again."""
        j = self.jobs
        i = j.idx(name)
        if j.alloc[i]:
            raise InternalError(f"job {name!r} still holds {j.alloc[i]} accelerators; stop it before withdrawing it")
        j.status[i] = JobStatus.WAITING
        j.arrival[i] = math.inf

    def submit(self, name: str) -> None:
        """Queue a withdrawn job again, as arriving now (it has work again)."""
        j = self.jobs
        i = j.idx(name)
        if j.status[i] == JobStatus.WAITING:
            j.status[i] = JobStatus.QUEUED
            j.arrival[i] = self.now

    def advance(self, dt: float) -> None:
        """Move time on by dt: releases, replica warm-up, job progress, checkpoints, completions."""
        t0, t1 = self.now, self.now + dt
        j = self.jobs
        for s in self.serving.values():
            while s.starting and s.starting[0][0] <= t1:
                s.starting.popleft()
        j.status[(j.status == JobStatus.WAITING) & (j.arrival < t1)] = JobStatus.QUEUED
        for i in np.flatnonzero((j.status == JobStatus.DRAINING) & (j.release_at <= t1)):
            self._release(int(i), float(j.release_at[i]))
        run = j.status == JobStatus.RUNNING
        if run.any():
            active = np.clip(t1 - np.maximum(j.pause_until, t0), 0.0, dt)
            gained = np.where(run, j.alloc * j.eff * active / 3600.0, 0.0)
            j.since_ckpt += gained
            done = run & (j.progress + j.since_ckpt >= j.work)
            ckpt = run & ~done & (t1 - j.last_ckpt >= j.ckpt_interval)
            j.progress[ckpt] += j.since_ckpt[ckpt]
            j.since_ckpt[ckpt] = 0.0
            j.last_ckpt[ckpt] = t1
            j.pause_until[ckpt] = np.maximum(j.pause_until[ckpt], t1) + j.ckpt_cost[ckpt]
            for i in np.flatnonzero(done):
                over = j.progress[i] + j.since_ckpt[i] - j.work[i]
                j.progress[i] = j.work[i]
                j.since_ckpt[i] = 0.0
                # Finish time inside the step, from the surplus progress.
                rate = max(j.alloc[i] * j.eff[i] / 3600.0, 1e-12)
                j.finish[i] = t1 - over / rate
                j.status[i] = JobStatus.DONE
                self._free_job(int(i), dict(j.nodes[i]))
        self.now = t1

    def _release(self, i: int, at: float) -> None:
        j = self.jobs
        if j.release_at[i] < np.inf and j.since_ckpt[i] > 0:
            # A checkpointed stop/shrink commits what was done; a kill already moved it to `lost`.
            j.progress[i] += j.since_ckpt[i]
            j.since_ckpt[i] = 0.0
        self._free_job(i, j.release_nodes[i])
        j.release_nodes[i] = {}
        j.release_at[i] = np.inf
        if j.alloc[i] == 0:
            j.status[i] = JobStatus.QUEUED
            j.started[i] = np.nan
        else:
            j.status[i] = JobStatus.RUNNING
            j.last_ckpt[i] = at
            j.pause_until[i] = at + self.restart_s

    def _free_job(self, i: int, nodes: dict[int, int]) -> None:
        j = self.jobs
        for n, c in nodes.items():
            self.free[n] += c
            left = j.nodes[i].get(n, 0) - c
            if left > 0:
                j.nodes[i][n] = left
            else:
                j.nodes[i].pop(n, None)
            j.alloc[i] -= c


def _eff(level: Level) -> float:
    return Placement({}, level).efficiency

