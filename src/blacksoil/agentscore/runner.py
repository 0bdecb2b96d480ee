"""Running agents on tasks: one episode per (task, trial), scored by the checker, timed and counted.

An episode's reward (0..1) and trajectory are what the learner consumes (see api.py).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from blacksoil.errors import BlacksoilError, ConfigError

from .agents import Agent, ToolBox, Trajectory
from .checkers import check
from .environments import EnvSettings, env_for
from .rewards import RewardRecorder
from .tasks import Task


@dataclass
class Episode:
    """One agent attempt at one task: verdict, reward, cost counters and the trajectory."""

    task_id: str
    suite: str
    split: str
    category: str
    multi_step: bool
    trial: int
    passed: bool
    reward: float
    checks: list[dict[str, Any]]
    latency_s: float
    cpu_s: float
    prompt_tokens: int
    completion_tokens: int
    model_calls: int
    tool_calls: int
    tool_errors: int
    step_latencies_s: list[float]
    trajectory: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    policy_violations: int = 0
    """Tool calls the security policies denied or sent to a human."""
    session_id: str | None = None
    """The session the model endpoint saw (runtime agent); its reward is in the experience store."""
    reward_recorded: bool = False

    def to_dict(self) -> dict[str, Any]:
        """JSON form."""
        return asdict(self)


def cpu_seconds() -> float:
    """CPU seconds of this process plus its live children (an embedded engine runs in a worker subprocess).

    A remote endpoint's CPU is not visible from here; then this counts the client side only.
    """
    total = time.process_time()
    try:
        import psutil
    except ImportError:  # psutil is optional: without it only this process is counted
        return total
    for child in psutil.Process().children(recursive=True):
        try:
            t = child.cpu_times()
            total += t.user + t.system
        except psutil.Error:
            continue
    return total


def run_episode(agent: Agent, task: Task, trial: int = 0, rewards: RewardRecorder | None = None, *,
                settings: EnvSettings) -> Episode:
    """Build the task's environment (with `settings`), let the agent act, check the final state and answer.

    With `rewards`, the checker's reward is stored on the session the endpoint saw (see rewards.py).
    """
    env = env_for(task, settings)
    initial = env.snapshot()
    traj = Trajectory()
    box = ToolBox(env, task.tools, traj)
    error = None
    t0, c0 = time.perf_counter(), cpu_seconds()
    try:
        agent.run(task, env, box)
    except BlacksoilError as e:
        # Endpoint down, bad model output…: the attempt fails, the run goes on.
        error = f"{type(e).__name__}: {e.message}"
        traj.stopped = "error"
    # A child that exits mid-episode drops out of the sum; never report negative CPU.
    latency, cpu = time.perf_counter() - t0, max(0.0, cpu_seconds() - c0)
    verdict = check(task, env.snapshot(), traj.answer, initial)
    recorded = _record_reward(rewards, task, trial, traj, verdict.reward, verdict.passed)
    tool_steps = [s for s in traj.steps if s.kind == "tool"]
    model_steps = [s for s in traj.steps if s.kind == "model"]
    return Episode(
        task_id=task.id, suite=task.suite, split=task.split, category=task.category, multi_step=task.multi_step,
        trial=trial, passed=verdict.passed, reward=round(verdict.reward, 6),
        checks=[{"passed": c.passed, "credit": c.credit, "detail": c.detail} for c in verdict.checks],
        latency_s=latency, cpu_s=cpu,
        prompt_tokens=sum(s.prompt_tokens for s in model_steps),
        completion_tokens=sum(s.completion_tokens for s in model_steps),
        model_calls=len(model_steps), tool_calls=len(tool_steps),
        tool_errors=sum(1 for s in tool_steps if s.error),
        step_latencies_s=[s.latency_s for s in traj.steps if s.kind in ("model", "tool")],
        trajectory=traj.to_dict(), error=error, policy_violations=traj.policy_violations,
        session_id=traj.session_id, reward_recorded=recorded,
    )


def _record_reward(rewards: RewardRecorder | None, task: Task, trial: int, traj: Trajectory, reward: float,
                   passed: bool) -> bool:
    """The checker's reward into the experience store, on the session the endpoint saw (when the agent has one)."""
    # The test split is held out from learning: its rewards never reach the store the learner reads.
    if rewards is None or traj.session_id is None or task.split == "test":
        return False
    return rewards.record(traj.session_id, suite=task.suite, task_id=task.id, reward=round(reward, 6),
                          passed=passed, trial=trial, policy_violations=traj.policy_violations, split=task.split)


def run_tasks(agent: Agent, tasks: Sequence[Task], k: int = 1,
              on_episode: Callable[[Episode], None] | None = None, concurrency: int = 1,
              rewards: RewardRecorder | None = None, *, settings: EnvSettings) -> list[Episode]:
    """Run every task k times (trials in task order) in environments built with `settings`; `on_episode` drives
    progress bars.

    With `concurrency` > 1 that many episodes run at once (each has its own environment; the agent must be
    stateless across runs, as the model agents are), so an engine with several slots batches their decoding.
    Results keep task order either way.
    """
    if concurrency < 1:
        raise ConfigError(f"concurrency={concurrency} must be at least 1")
    jobs = [(task, trial) for task in tasks for trial in range(k)]

    def one(job: tuple[Task, int]) -> Episode:
        ep = run_episode(agent, *job, rewards=rewards, settings=settings)
        if on_episode:
            on_episode(ep)
        return ep

    if concurrency == 1:  # in the caller's thread: no pool for the common sequential case
        return [one(job) for job in jobs]
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="agentscore") as pool:
        return list(pool.map(one, jobs))
