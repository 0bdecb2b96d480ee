"""Experience collection for learning: agents attempt AgentScore train tasks through the gateway, several
attempts per task, and every model call the gateway captures is grouped by the attempt's session.

The capture sink keeps the events of learning sessions in memory (and forwards every event to the platform's
sink when one is given), so the learner sees the engine's exact completion token ids.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from blacksoil.agentscore.config import AgentscoreConfig
from blacksoil.contracts import ExperienceEvent, ExperienceSink, RunningGateway
from blacksoil.errors import ConfigError

if TYPE_CHECKING:
    from blacksoil.agentscore.llm_agent import OpenAIToolAgent

__all__ = ["Attempt", "CaptureSink", "collect", "session_agent"]


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
    """A scripted solution (oracle), not something a model version did: it never goes stale in replay."""

    def trajectory(self, served_version: str | None = None) -> dict[str, Any]:
        """The record prioritized replay ranks (see experience.priorities).

        Replay drops items produced by versions too far behind the served one (`served_version`); a
        demonstration is stamped with the served version so it stays eligible.
        """
        version = served_version if self.demonstration else self.adapter_version
        return {"session_id": self.session_id, "task_id": self.task_id, "reward": self.reward,
                "failed": not self.passed, "created_at": self.created_at, "adapter_version": version,
                "content_hash": None}


class CaptureSink:
    """ExperienceSink that keeps model calls per session (thread-safe) and forwards to another sink."""

    def __init__(self, forward: ExperienceSink | None = None) -> None:
        self.forward = forward
        self._by_session: dict[str, list[ExperienceEvent]] = defaultdict(list)
        self._lock = threading.Lock()

    def emit(self, event: ExperienceEvent) -> None:
        if self.forward is not None:
            self.forward.emit(event)
        if event.kind == "model_call" and event.session_id:
            with self._lock:
                self._by_session[event.session_id].append(event)

    def take(self, session_id: str) -> list[ExperienceEvent]:
        """The session's model calls, in order, removed from memory."""
        with self._lock:
            return self._by_session.pop(session_id, [])

    def close(self) -> None:
        if self.forward is not None:
            self.forward.close()


def session_agent(base_url: str, model: str, session_id: str, temperature: float, *,
                  config: AgentscoreConfig | None = None, api_key: str | None = None) -> OpenAIToolAgent:
    """AgentScore's LLM agent, tagging each call with the session id and sampling at `temperature`."""
    from blacksoil.agentscore.llm_agent import OpenAIToolAgent

    return OpenAIToolAgent(base_url, model, api_key, config=config, temperature=temperature, user=session_id)


def collect(gw: RunningGateway, sink: CaptureSink, suites: Sequence[str], *, attempts: int, temperature: float,
            tasks_per_suite: int | None = None, adapter_version: str | None = None,
            on_attempt: Callable[[Attempt], None] | None = None, concurrency: int = 1,
            config: AgentscoreConfig | None = None, api_key: str | None = None) -> list[Attempt]:
    """Run `attempts` attempts of each train task of `suites` through the gateway `gw` (`concurrency` at once).

    `config` (the agent's limits) and `api_key` (agents.api_key) come from the caller's settings.
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
        ep = api.run_task(agent, task, trial)
        a = Attempt(task.id, suite, trial, sid, float(ep.reward), bool(ep.passed), adapter_version, sink.take(sid))
        if on_attempt is not None:
            on_attempt(a)
        return a

    with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="collect") as pool:
        return list(pool.map(one, jobs))
