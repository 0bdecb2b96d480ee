"""The small API the learner and other pillars use: list tasks, run an agent on a task, get reward + trajectory.

    from blacksoil.agentscore import api
    tasks = api.list_tasks("manufacturing", "train")       # never "test" for training
    env = api.EnvSettings.from_settings(root_settings)   # the RUL model's home, manufacturing settings
    ep = api.run_task(api.make_agent("runtime", base_url=..., model=...), tasks[0], settings=env)   # or "llm"
    ep.reward, ep.passed, ep.trajectory                    # 0..1, bool, dict of steps and answer
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from blacksoil.contracts import ExperienceSink
from blacksoil.errors import ConfigError

from .agents import Agent, NullAgent, OracleAgent
from .config import AgentscoreConfig
from .environments import EnvSettings
from .rewards import RewardRecorder
from .runner import Episode, run_episode, run_tasks
from .tasks import SPLITS, SUITES, Task
from .tasks import list_tasks as _list_tasks

if TYPE_CHECKING:
    from blacksoil.agents.launcher import RuntimeSetup

AGENTS = ("runtime", "llm", "oracle", "null")
__all__ = ["AGENTS", "EnvSettings", "Episode", "RewardRecorder", "Task", "get_task", "list_tasks", "make_agent",
           "practice_tasks", "run_task", "run_tasks", "splits", "suites", "training_tasks"]


def suites() -> list[str]:
    """Names of the shipped suites."""
    return list(SUITES)


def splits() -> tuple[str, ...]:
    """train, dev, test: the test split is held out from learning."""
    return SPLITS


def list_tasks(suite: str, split: str | None = None) -> list[Task]:
    """Tasks of a suite, optionally of one split."""
    return _list_tasks(suite, split)


def training_tasks(suite: str) -> list[Task]:
    """The tasks a learner may train on: the train split only (dev is for the eval gate, test is held out)."""
    return _list_tasks(suite, "train")


def practice_tasks(suite: str, per_template: int, *, settings: EnvSettings) -> list[Task]:
    """Fresh train instances from the suite's own generator, none equal to a dev or test task (see practice.py);
    `settings`: the environments' settings (the manufacturing generator predicts RULs with the plant's model)."""
    from .practice import practice_tasks as _practice

    return _practice(suite, per_template, settings)


def get_task(suite: str, task_id: str) -> Task:
    """One task by id."""
    for t in _list_tasks(suite):
        if t.id == task_id:
            return t
    raise ConfigError(f"task {task_id!r} is not in suite {suite}; list them with api.list_tasks({suite!r})")


def make_agent(name: str, *, base_url: str | None = None, model: str | None = None,
               step_budget: int | None = None, approvals: str | None = None, config: AgentscoreConfig | None = None,
               api_key: str | None = None, runtime: RuntimeSetup | None = None,
               new_sink: Callable[[], ExperienceSink] | None = None) -> Agent:
    """An agent by name: `runtime` (the agent runtime) or `llm` (the built-in loop), both needing base_url and model
    of an OpenAI-compatible endpoint; `oracle`, `null`. `approvals` (runtime only): `none` or `auto`.

    Settings come in as arguments: `config` is AgentScore's (None = its defaults); the llm agent sends `api_key`
    (agents.api_key); the runtime agent needs `runtime` (its home, agents and security settings) and records
    experience through sinks `new_sink()` makes.
    """
    if name == "oracle":
        return OracleAgent()
    if name == "null":
        return NullAgent()
    if name not in ("llm", "runtime"):
        raise ConfigError(f"agent {name!r} is unknown; use one of {', '.join(AGENTS)}")
    if not base_url or not model:
        raise ConfigError(f"the {name} agent needs base_url and model (an OpenAI-compatible endpoint)")
    if name == "runtime":
        from .runtime_agent import RuntimeAgent

        if runtime is None:
            raise ConfigError("the runtime agent needs its settings: pass runtime=RuntimeSetup(home, agents, security)")
        return RuntimeAgent(base_url, model, setup=runtime, config=config, new_sink=new_sink,
                            step_budget=step_budget, approvals=approvals)
    from .llm_agent import OpenAIToolAgent

    return OpenAIToolAgent(base_url, model, api_key, step_budget=step_budget, config=config)


def run_task(agent: Agent, task: Task, trial: int = 0, rewards: RewardRecorder | None = None, *,
             settings: EnvSettings) -> Episode:
    """Run one agent on one task in a fresh environment built with `settings` (EnvSettings.from_settings of the
    root settings): Episode with reward (0..1), passed and trajectory.

    With `rewards` (RewardRecorder.from_config), the reward is also stored on the session the endpoint saw.
    """
    return run_episode(agent, task, trial, rewards, settings=settings)
