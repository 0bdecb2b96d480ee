"""The unified policy: serving first, idle lent to learning, checkpoint-aware victims, reasons, purity."""

from __future__ import annotations

import copy

import numpy as np

from blacksoil.scheduling.config import SchedulingConfig
from blacksoil.scheduling.policy import UnifiedPolicy
from blacksoil.scheduling.state import Action, ClusterState, JobStatus
from blacksoil.scheduling.topology import Cluster
from blacksoil.scheduling.workloads import AgentGroup, LearningJob, ServingDeployment

CFG = SchedulingConfig(step_s=30, replica_cold_start_s=0, headroom_sigmas=0, min_headroom=0)


def _state(jobs: list[LearningJob], groups: list[AgentGroup] | None = None) -> ClusterState:
    c = Cluster(nodes=4, accelerators_per_node=8, nodes_per_rack=2, racks_per_pod=2)
    return ClusterState(c, [ServingDeployment("chat", slo_max_utilization=1.0, min_replicas=1)], jobs, groups,
                        restart_s=0, kill_grace_s=0, cold_start_s=0)


def _step(state: ClusterState, policy: UnifiedPolicy, demand: float, dt: float = 30.0) -> list:
    state.serving["chat"].observe(demand, CFG.forecast_alpha, CFG.forecast_beta)
    policy.observe(state)
    plan = policy.decide(state)
    state.apply(plan)
    state.advance(dt)
    return plan.decisions


def test_idle_capacity_is_lent_and_reclaimed_with_a_checkpoint() -> None:
    jobs = [LearningJob("low", size=16, work_acc_h=100, priority=100, checkpoint_cost_s=30),
            LearningJob("high", size=8, work_acc_h=100, priority=300, checkpoint_cost_s=30)]
    state, policy = _state(jobs), UnifiedPolicy(CFG)
    state.advance(1)  # jobs arrive
    first = _step(state, policy, demand=2)
    started = {d.target for d in first if d.action is Action.START}
    assert started == {"low", "high"}
    assert all(d.reason for d in first)
    for _ in range(20):
        _step(state, policy, demand=2)
    assert state.jobs.progress.sum() + state.jobs.since_ckpt.sum() > 0
    # Serving demand rises slowly enough to be seen coming: learning is checkpointed, not killed.
    plan: list = []
    for demand in range(3, 15):
        plan += _step(state, policy, demand=demand)
    stops = [d for d in plan if d.action in (Action.STOP, Action.SHRINK)]
    assert stops, plan
    assert stops[0].target == "low" and "checkpoint" in stops[0].reason
    for _ in range(4):
        _step(state, policy, demand=14)
    j = state.jobs
    assert j.lost.sum() == 0
    assert j.status[j.idx("high")] == JobStatus.RUNNING
    assert state.serving["chat"].replicas >= 14


def test_sudden_spike_kills_the_job_with_least_work_at_risk() -> None:
    jobs = [LearningJob(f"j{i}", size=8, work_acc_h=100, checkpoint_interval_s=1e9) for i in range(3)]
    state, policy = _state(jobs), UnifiedPolicy(CFG)
    state.advance(1)
    _step(state, policy, demand=1)
    j = state.jobs
    j.since_ckpt[:] = [3.0, 1.0, 2.0]  # j1 has the least work since its checkpoint
    plan = _step(state, policy, demand=9)  # ready capacity 1 < demand 9: the SLO is missed now
    stops = [d for d in plan if d.action is Action.STOP]
    assert [d.target for d in stops] == ["j1"]
    assert not stops[0].checkpoint and "SLO missed now" in stops[0].reason
    assert j.lost[j.idx("j1")] == 1.0 and j.lost.sum() == 1.0


def test_elastic_jobs_are_trimmed_before_any_job_is_stopped() -> None:
    jobs = [LearningJob("rigid", size=8, work_acc_h=100, priority=100),
            LearningJob("elastic", size=16, min_size=8, work_acc_h=100, priority=200)]
    state, policy = _state(jobs), UnifiedPolicy(CFG)
    state.advance(1)
    _step(state, policy, demand=1)
    assert state.jobs.alloc.sum() == 24
    plan = _step(state, policy, demand=12)
    kinds = [(d.action, d.target) for d in plan if d.action in (Action.STOP, Action.SHRINK)]
    assert kinds[0] == (Action.SHRINK, "elastic")


def test_decide_is_a_pure_function_of_state() -> None:
    jobs = [LearningJob(f"j{i}", size=8 * (i + 1), work_acc_h=50) for i in range(3)]
    state, policy = _state(jobs), UnifiedPolicy(CFG)
    state.advance(1)
    _step(state, policy, demand=3)
    state.serving["chat"].observe(20, CFG.forecast_alpha, CFG.forecast_beta)
    policy.observe(state)
    before = copy.deepcopy((state.free, state.jobs.status, state.jobs.alloc, state.jobs.nodes))
    a, b = policy.decide(state), policy.decide(state)
    assert a.decisions == b.decisions and len(a) > 0
    after = (state.free, state.jobs.status, state.jobs.alloc, state.jobs.nodes)
    same = [np.array_equal(x, y) if isinstance(x, np.ndarray) else x == y for x, y in zip(before, after, strict=True)]
    assert all(same)


def test_agent_group_lands_on_one_node() -> None:
    state = _state([], [AgentGroup("team", accelerators=6), AgentGroup("huge", accelerators=12)])
    policy = UnifiedPolicy(CFG)
    plan = _step(state, policy, demand=1)
    placed = [d for d in plan if d.action is Action.PLACE_GROUP]
    assert [d.target for d in placed] == ["team"]
    assert len(placed[0].nodes) == 1 and sum(placed[0].nodes.values()) == 6
    assert "huge" not in state.group_node


def test_kueue_baseline_evicts_newest_borrower_without_checkpoint() -> None:
    from blacksoil.scheduling.baselines import KueuePolicy

    cfg = SchedulingConfig(step_s=30, hpa_target_utilization=1.0, hpa_scale_down_window_s=0)
    jobs = [LearningJob("old", size=8, work_acc_h=100), LearningJob("new", size=8, work_acc_h=100, arrival_s=60)]
    c = Cluster(nodes=4, accelerators_per_node=8, nodes_per_rack=2, racks_per_pod=2)
    policy = KueuePolicy(cfg, serving_nominal=24, total=32)
    state = ClusterState(c, [ServingDeployment("chat", slo_max_utilization=1.0)], jobs, quotas=policy.quotas,
                         restart_s=0, kill_grace_s=0, cold_start_s=0)
    for _ in range(4):
        state.serving["chat"].observe(8, 0.5, 0.2)
        policy.observe(state)
        state.apply(policy.decide(state))
        state.advance(30)
    assert state.jobs.alloc.sum() == 16  # both borrow serving's unused quota
    state.jobs.since_ckpt[:] = 0.5
    state.serving["chat"].observe(24, 0.5, 0.2)
    policy.observe(state)
    plan = policy.decide(state)
    stops = [d for d in plan if d.action is Action.STOP]
    assert [d.target for d in stops] == ["new"] and not stops[0].checkpoint  # newest admitted, killed
    state.apply(plan)
    assert state.jobs.lost[state.jobs.idx("new")] == 0.5
