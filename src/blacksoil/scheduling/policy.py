"""The unified policy: serving SLOs first, idle capacity lent to learning, checkpoint-aware preemption.

`Policy.decide(state)` is a pure function of the ClusterState (the forecaster memory is updated in
`observe`, before deciding), so the simulator and the real backends run the same decisions.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod

import numpy as np

from blacksoil.scheduling.config import SchedulingConfig
from blacksoil.scheduling.state import Action, ClusterState, Decision, JobStatus, Plan, ServingState
from blacksoil.scheduling.topology import Level, Placement
from blacksoil.scheduling.workloads import quota_allows


class Policy(ABC):
    """Check/act helpers every policy shares; subclasses choose targets, victims and what to lend."""

    name = "base"
    elastic_growth = True
    """Whether running elastic jobs grow back towards their maximum when capacity frees up."""
    partial_start = True
    """Whether an elastic job may start below its maximum (Kueue calls this partial admission)."""
    max_level = Level.CLUSTER
    """Largest topology domain a gang may span (Kueue TAS 'preferred' falls back to the whole cluster)."""
    grow_cooldown_s = 0.0
    """A job grows only this long after its last start or resize (damps grow/shrink flapping)."""

    def __init__(self, cfg: SchedulingConfig | None = None):
        self.cfg = cfg or SchedulingConfig()

    # ---- serving targets ----

    @abstractmethod
    def desired_replicas(self, s: ServingState, state: ClusterState) -> int:
        """Replicas this policy wants for one deployment now."""

    def observe(self, state: ClusterState) -> None:
        """Remember this step's desired replicas (the scale-down stabilization window reads them)."""
        window = self.cfg.hpa_scale_down_window_s
        for s in state.serving.values():
            s.hpa_history.append((state.now, self.desired_replicas(s, state)))
            while s.hpa_history and s.hpa_history[0][0] < state.now - window:
                s.hpa_history.popleft()

    def target_replicas(self, s: ServingState, state: ClusterState) -> int:
        """Scale up at once, scale down only to the highest target of the stabilization window (HPA rule)."""
        now = self.desired_replicas(s, state)
        recent = max((d for _, d in s.hpa_history), default=now)
        return max(now, recent, s.spec.min_replicas)

    # ---- check/act pairs ----

    def can_place(self, state: ClusterState, free: np.ndarray, i: int, size: int,
                  max_level: Level | None = None) -> Placement | None:
        """Where job i would run at `size` accelerators (quota and topology permitting), or None."""
        if state.quotas and not quota_allows(state.quotas, self._usage(state, free), "learning", size):
            return None
        return state.cluster.can_place(free, size, self.max_level if max_level is None else max_level)

    def place(self, state: ClusterState, i: int, p: Placement, reason: str, grow: bool = False) -> Decision:
        name = state.jobs.specs[i].name
        return Decision(Action.GROW if grow else Action.START, name, reason, dict(p.nodes), level=p.level)

    def can_preempt(self, state: ClusterState, i: int) -> int:
        """Accelerators that stopping job i would hand back (0 if it cannot be preempted now)."""
        j = state.jobs
        return int(j.alloc[i]) if j.status[i] == JobStatus.RUNNING else 0

    def preempt(self, state: ClusterState, i: int, checkpoint: bool, reason: str, shrink_by: int = 0) -> Decision:
        """Stop job i, or shrink it by `shrink_by` accelerators, emptying its smallest node shares first."""
        j = state.jobs
        name = j.specs[i].name
        if shrink_by <= 0:
            return Decision(Action.STOP, name, reason, dict(j.nodes[i]), checkpoint=checkpoint)
        take: dict[int, int] = {}
        need = shrink_by
        for n, c in sorted(j.nodes[i].items(), key=lambda kv: (kv[1], kv[0])):
            k = min(c, need)
            take[n] = k
            need -= k
            if need == 0:
                break
        return Decision(Action.SHRINK, name, reason, take, checkpoint=checkpoint)

    def can_place_group(self, state: ClusterState, free: np.ndarray, name: str) -> Placement | None:
        """The node an agent group would share (all its accelerators on one node), or None."""
        g = state.groups[name]
        if g.accelerators > state.cluster.per_node:
            return None
        return state.cluster.can_place(free, g.accelerators, Level.NODE)

    def place_group(self, state: ClusterState, name: str, p: Placement) -> Decision:
        (node,) = p.nodes
        return Decision(Action.PLACE_GROUP, name, f"colocated on {state.cluster.node_name(node)}", dict(p.nodes))

    def _usage(self, state: ClusterState, free: np.ndarray) -> dict[str, int]:
        # Usage as of the tentative `free`: what this plan already took counts against learning.
        base = state.usage()
        base["learning"] += int(state.free.sum() - free.sum())
        return base

    # ---- the step ----

    def decide(self, state: ClusterState) -> Plan:
        """One scheduling step: serving replicas to target, preemptions for a shortfall, idle lent to learning."""
        plan = Plan()
        free = state.free.copy()
        shortfall = self._scale_serving(state, free, plan)
        self._place_groups(state, free, plan)
        if shortfall > 0:
            self._reclaim(state, free, shortfall, plan)
        else:
            self._lend(state, free, plan)
        return plan

    def serving_mask(self, state: ClusterState) -> np.ndarray | None:
        """Nodes serving may use (None = all)."""
        return None

    def learning_free(self, state: ClusterState, free: np.ndarray) -> np.ndarray:
        """The part of `free` learning may use."""
        return free

    def _scale_serving(self, state: ClusterState, free: np.ndarray, plan: Plan) -> int:
        """Scale every deployment towards its target on free capacity; return the accelerators still missing."""
        missing = 0
        mask = self.serving_mask(state)
        for name, s in state.serving.items():
            unit = s.spec.replica_accelerators
            target = self.target_replicas(s, state)
            have = s.replicas
            if target < have:
                counts = state.cluster.units_to_remove(s.held, free, have - target)
                free += counts * unit
                plan.add(Decision(Action.SCALE_DOWN, name, f"{have}→{target} replicas: demand {s.demand:.1f} acc fell",
                                  _nz(counts)))
                continue
            want = target - have
            if want == 0:
                continue
            usable = free if mask is None else np.where(mask, free, 0)
            fit = min(want, int((usable // unit).sum()))
            if fit:
                up = state.cluster.can_place_units(usable, unit, fit)
                assert up is not None, "fit was computed from the free slots"
                free -= up * unit
                plan.add(Decision(Action.SCALE_UP, name, f"{have}→{have + fit} replicas for demand {s.demand:.1f} acc "
                                  f"(target {target})", _nz(up)))
            missing += (want - fit) * unit
        return missing

    def _place_groups(self, state: ClusterState, free: np.ndarray, plan: Plan) -> None:
        """Agent groups outrank learning: each goes onto one node as soon as one has room."""
        for name in sorted(set(state.groups) - set(state.group_node)):
            p = self.can_place_group(state, free, name)
            if p is not None:
                plan.add(self.place_group(state, name, p))
                _take(free, p)

    @abstractmethod
    def _reclaim(self, state: ClusterState, free: np.ndarray, shortfall: int, plan: Plan) -> None:
        """Free `shortfall` accelerators for serving by shrinking or stopping learning."""

    def lend_reserve(self, state: ClusterState) -> int:
        """Free accelerators kept back from learning for serving growth that is on its way."""
        return 0

    def _lend(self, state: ClusterState, free: np.ndarray, plan: Plan) -> None:
        """Start queued jobs (best-effort FIFO by priority) and grow elastic ones on what is left."""
        j = state.jobs
        lf = self.learning_free(state, free)
        reserve = self.lend_reserve(state)
        if reserve:
            lf = _hold_back(state, lf, reserve)
        failed_at = math.inf  # a size that did not fit: every larger one will not fit either
        q = state.queued()
        smallest = j.min_size[q] if self.partial_start else j.size[q]
        room = int(lf.sum())
        pos = 0
        while pos < q.size:
            # Jump to the next queued job that could fit; the scan is vectorized, the loop runs per placement.
            nxt = np.flatnonzero((smallest[pos:] < failed_at) & (smallest[pos:] <= room))
            if not nxt.size:
                break
            pos += int(nxt[0])
            i = int(q[pos])
            pos += 1
            sizes = [int(j.size[i])]
            if self.partial_start and j.min_size[i] < j.size[i]:
                sizes.append(int(j.min_size[i]))
            for size in sizes:
                if size >= failed_at or size > room:
                    continue
                p = self.can_place(state, lf, i, size)
                if p is None:
                    failed_at = min(failed_at, size)
                    continue
                reason = f"idle capacity lent: {size}/{j.size[i]} acc in one {p.level.name.lower()}"
                plan.add(self.place(state, i, p, reason))
                lf = state.cluster.place(lf, p)
                _take(free, p)
                room -= size
                break
        if self.elastic_growth:
            self._grow(state, free, lf, plan)

    def _grow(self, state: ClusterState, free: np.ndarray, lf: np.ndarray, plan: Plan) -> None:
        j = state.jobs
        # Growing costs a checkpoint and a restart: only for jobs past the cool-down with hours of work left.
        cand = np.flatnonzero((j.status == JobStatus.RUNNING) & (j.alloc < j.size)
                              & (state.now - j.resized_at >= self.grow_cooldown_s)
                              & (j.work - j.progress - j.since_ckpt >= 0.5 * j.size))
        room = int(lf.sum())
        failed_at = math.inf
        for i in cand[np.argsort(-j.priority[cand], kind="stable")]:
            extra = int(j.size[i] - j.alloc[i])
            if extra > room or extra >= failed_at:
                continue
            p = self.can_place(state, lf, int(i), extra)
            if p is None:
                failed_at = extra
                continue
            plan.add(self.place(state, int(i), p, f"grow {j.alloc[i]}→{j.size[i]} acc on idle capacity", grow=True))
            lf = state.cluster.place(lf, p)
            _take(free, p)
            room -= extra


def victim_order(priority: np.ndarray, at_risk: np.ndarray, size: np.ndarray) -> np.ndarray:
    """Preemption order: lowest priority, then least work lost (since the last checkpoint), then smallest."""
    return np.lexsort((np.arange(priority.size), size, at_risk, priority))


def _hold_back(state: ClusterState, free: np.ndarray, reserve: int) -> np.ndarray:
    """`free` minus `reserve` accelerators, held back on partly used nodes first (whole nodes stay lendable)."""
    counts = state.cluster.can_place_units(free, 1, min(reserve, int(free.sum())))
    return free if counts is None else free - counts


def _take(free: np.ndarray, p: Placement) -> None:
    for n, c in p.nodes.items():
        free[n] -= c


def _nz(counts: np.ndarray) -> dict[int, int]:
    idx = np.flatnonzero(counts)
    return {int(n): int(counts[n]) for n in idx}


class UnifiedPolicy(Policy):
    """Ours: forecast with adaptive headroom, trims elastic jobs first, checkpoints before stopping."""

    name = "unified"
    cost_aware = False
    """True: pick victims by work lost per freed accelerator, pauses included (with elastic minimums at half
    size a trim never beats a stop, so it never trims). False (default): lowest priority first, elastic jobs
    trimmed before any job is stopped (kueue#77/#3762). Both gave identical goodput on the 10k-accelerator trace."""
    max_level = Level.POD  # a gang across pods runs at 80 %: waiting for room inside a pod is cheaper

    @property
    def grow_cooldown_s(self) -> float:  # type: ignore[override]
        return self.cfg.grow_cooldown_s

    _ckpt_cache: tuple[int, float] = (-1, 0.0)

    def _typical_ckpt(self, state: ClusterState) -> float:
        """Median checkpoint cost of the known jobs: the lead time a checkpointed preemption needs."""
        j = state.jobs
        if self._ckpt_cache[0] != len(j):
            self._ckpt_cache = (len(j), float(np.median(j.ckpt_cost)) if len(j) else 0.0)
        return self._ckpt_cache[1]

    def lend_reserve(self, state: ClusterState) -> int:
        steps = self.cfg.lend_horizon_s / self.cfg.step_s
        need = 0
        for s in state.serving.values():
            unit = s.spec.replica_accelerators
            ahead = s.forecast(steps) + self.cfg.headroom_sigmas * math.sqrt(s.err_var)
            need += max(0, math.ceil(ahead / (s.spec.slo_max_utilization * unit)) - s.replicas) * unit
        return need

    def desired_replicas(self, s: ServingState, state: ClusterState) -> int:
        cfg = self.cfg
        # Look ahead as far as a replica takes to become useful after a checkpointed stop.
        horizon = (cfg.replica_cold_start_s + self._typical_ckpt(state) + cfg.step_s) / cfg.step_s
        ahead = max(s.demand, s.forecast(horizon))
        # Step-to-step noise around the level does not grow with the horizon; the trend term carries drift.
        need = ahead + max(cfg.headroom_sigmas * math.sqrt(s.err_var), cfg.min_headroom * ahead)
        return max(s.spec.min_replicas, math.ceil(need / (s.spec.slo_max_utilization * s.spec.replica_accelerators)))

    def _reclaim(self, state: ClusterState, free: np.ndarray, shortfall: int, plan: Plan) -> None:
        coming = state.draining_release()
        if coming >= shortfall:
            return  # checkpoints already under way will hand back enough
        need = shortfall - coming
        # Kill without a checkpoint only when the SLO is being missed right now and a checkpoint takes longer
        # than a kill's grace period; otherwise checkpointing first loses nothing and costs no more time.
        missed = any(s.ready * s.spec.replica_accelerators * s.spec.slo_max_utilization < s.demand
                     for s in state.serving.values())
        j = state.jobs
        run = np.flatnonzero(j.status == JobStatus.RUNNING)
        urgent = missed and bool((j.ckpt_cost[run] > state.kill_grace_s).any())
        how = "kill (SLO missed now)" if urgent else "checkpoint then stop"
        # Work a victim loses per accelerator it frees (accelerator-seconds): what was done since its last
        # checkpoint when killed, plus the pause of a checkpoint and a restart for every worker it keeps or
        # restarts. Trimming an elastic job pauses the workers it keeps; stopping pauses all of them once.
        pause = j.ckpt_cost[run] + state.restart_s
        at_risk = j.since_ckpt[run] * 3600.0 if urgent else np.zeros(run.size)
        alloc = j.alloc[run].astype(np.float64)
        spare = (j.alloc[run] - j.min_size[run]).clip(min=0)
        stop_cost = (alloc * pause + at_risk) / np.maximum(alloc, 1)
        trim_cost = np.where(spare > 0, ((alloc - spare) * pause + at_risk) / np.maximum(spare, 1), np.inf)
        trim = (trim_cost < stop_cost) if self.cost_aware else spare > 0
        cost = np.where(trim, trim_cost, stop_cost)
        if self.cost_aware:
            order = np.lexsort((run, cost, j.priority[run]))
        else:  # trims before stops; each by lowest priority, then least work at risk, then smallest
            order = np.lexsort((run, j.alloc[run], at_risk, j.priority[run], ~trim))
        for k in order:
            if need <= 0:
                return
            i = int(run[k])
            if trim[k]:
                cut = min(int(spare[k]), need)
                plan.add(self.preempt(state, i, not urgent, f"serving short {shortfall} acc: shrink {j.alloc[i]}→"
                                      f"{j.alloc[i] - cut} (prio {j.priority[i]}), {how}", shrink_by=cut))
                need -= cut
            elif self.can_preempt(state, i):
                plan.add(self.preempt(state, i, not urgent, f"serving short {shortfall} acc: stop (prio "
                                      f"{j.priority[i]}, {at_risk[k] / 3600:.2f} acc-h lost), {how}"))
                need -= int(j.alloc[i])


