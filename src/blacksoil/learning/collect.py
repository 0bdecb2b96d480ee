"""Experience collection for learning: agents attempt AgentScore train tasks through the gateway, several
attempts per task, exactly as outside traffic does.

Nothing is kept here: the gateway's sink stores each model call (anonymized) under the attempt's session, and
the task checker's reward is stored on that session (`agentscore.rewards.RewardRecorder`); the learner reads both
back from the store (`learning.source`).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from blacksoil.agentscore.config import AgentscoreConfig
from blacksoil.contracts import ExperienceEvent, RunningGateway
from blacksoil.errors import ConfigError
from blacksoil.factories.env_settings import EnvSettings

if TYPE_CHECKING:
    from blacksoil.agentscore.llm_agent import OpenAIToolAgent
    from blacksoil.agentscore.rewards import RewardRecorder

__all__ = ["Attempt", "collect", "session_agent"]


@dataclass
class Attempt:
    """One agent attempt at one task, with its reward and the model calls it made."""

    task_id: str
    suite: str
    trial: int
    session_id: str
    reward: float
    passed: bool
    adapter_version: str | None
    calls: list[ExperienceEvent] = field(default_factory=list)
    created_at: float = field(default_factory=time.time)
    demonstration: bool = False
    """A scripted solution (oracle), not something a model version did: it enters the store tagged as one."""


def session_agent(base_url: str, model: str, session_id: str, temperature: float, *,
                  config: AgentscoreConfig | None = None, api_key: str | None = None) -> OpenAIToolAgent:
    """AgentScore's LLM agent, tagging each call with the session id and sampling at `temperature`."""
    from blacksoil.agentscore.llm_agent import OpenAIToolAgent

    return OpenAIToolAgent(base_url, model, api_key, config=config, temperature=temperature, user=session_id)


def collect(gw: RunningGateway, rewards: RewardRecorder, suites: Sequence[str], *, attempts: int,
            temperature: float,
            tasks_per_suite: int | None = None, adapter_version: str | None = None,
            on_attempt: Callable[[Attempt], None] | None = None, concurrency: int = 1,
            config: AgentscoreConfig | None = None, api_key: str | None = None,
            settings: EnvSettings) -> list[Attempt]:
    """Run `attempts` attempts of each train task of `suites` through the gateway `gw` (`concurrency` at once).

    `config` (the agent's limits), `api_key` (agents.api_key) and `settings` (the environments') come from the
    caller's settings.
    """
    from concurrent.futures import ThreadPoolExecutor

    from blacksoil.agentscore import api

    if attempts < 1:
        raise ConfigError(f"attempts={attempts} must be at least 1")
    if concurrency < 1:
        raise ConfigError(f"concurrency={concurrency} must be at least 1")
    jobs = []
    for suite in suites:
        tasks = api.list_tasks(suite, "train")
        jobs += [(suite, task, trial) for task in (tasks[:tasks_per_suite] if tasks_per_suite else tasks)
                 for trial in range(attempts)]

    def one(job: tuple[str, Any, int]) -> Attempt:
        suite, task, trial = job
        sid = f"learn-{task.id}-{trial}-{uuid.uuid4().hex[:8]}"
        agent = session_agent(gw.openai_base_url, gw.model, sid, temperature, config=config, api_key=api_key)
        ep = api.run_task(agent, task, trial, settings=settings)
        rewards.record(sid, suite=suite, task_id=task.id, reward=round(float(ep.reward), 6), passed=bool(ep.passed),
                       trial=trial, policy_violations=0, split=task.split)
        a = Attempt(task.id, suite, trial, sid, float(ep.reward), bool(ep.passed), adapter_version)
        if on_attempt is not None:
            on_attempt(a)
        return a

    with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="collect") as pool:
        return list(pool.map(one, jobs))
