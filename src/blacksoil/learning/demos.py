"""Demonstrations that bootstrap learning when the model never succeeds on its own: the AgentScore oracle's
scripted solutions of TRAIN tasks, replayed as the model calls the LLM agent would have made.

Each oracle step becomes one model call: the exact messages and tools the LLM agent sends (so the gateway would
render the same prompt), and the completion the gateway's tool grammar accepts, as token ids.

Under `up --learner` the learner lives in the gateway's process: `demonstrations_on` then builds them in a child
process on cores serving does not hold, since the oracle's episodes are CPU-bound Python that would hold the
gateway's GIL and share its cores (measured: three missed 10-s SLO windows while they ran in-process).
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Sequence
from typing import Any

from blacksoil.contracts import ExperienceEvent
from blacksoil.errors import ConfigError
from blacksoil.factories.env_settings import EnvSettings
from blacksoil.learning.basemodel import BaseModelInfo
from blacksoil.learning.collect import Attempt

END = "<|im_end|>"
"""The default model's end of turn, closing every completion the engine produces."""


def _completion_ids(tokenizer: Any, payload: dict[str, Any]) -> tuple[int, ...]:
    ids = tokenizer(json.dumps(payload) + END, add_special_tokens=False).input_ids
    return tuple(int(i) for i in ids)


def oracle_attempt(tokenizer: Any, task: Any, settings: EnvSettings) -> Attempt:
    """The oracle's solution of one train task (in an environment built with `settings`) as an Attempt whose calls
    carry completion token ids."""
    from blacksoil.agentscore.agents import OracleAgent, ToolBox, Trajectory
    from blacksoil.agentscore.checkers import check
    from blacksoil.agentscore.environments import env_for
    from blacksoil.factories.toolspec import to_json

    if task.split != "train":
        raise ConfigError(f"demonstrations come from train tasks only; {task.id} is in {task.split!r}")
    env = env_for(task, settings)
    traj = Trajectory()
    box = ToolBox(env, task.tools, traj)
    OracleAgent().run(task, env, box)
    verdict = check(task, env.snapshot(), traj.answer)
    tools = [t.openai() for t in box.specs]
    messages: list[dict[str, Any]] = [{"role": "system", "content": env.system_prompt},
                                      {"role": "user", "content": task.instruction}]
    sid = f"demo-{task.id}-{uuid.uuid4().hex[:8]}"
    calls = []
    for i, step in enumerate(traj.steps):
        if step.kind == "tool":
            payload = {"name": step.name, "arguments": step.args}
            cid = f"call_demo{i}"
            said = {"role": "assistant", "content": None, "tool_calls": [
                {"id": cid, "type": "function", "function": {"name": step.name, "arguments": json.dumps(step.args)}}]}
            calls.append(_event(sid, messages, tools, _completion_ids(tokenizer, payload), task, said))
            messages = [*messages,
                        {"role": "assistant", "content": "", "tool_calls": [
                            {"id": cid, "type": "function",
                             "function": {"name": step.name, "arguments": json.dumps(step.args)}}]},
                        {"role": "tool", "tool_call_id": cid, "content": to_json(step.result)}]
        elif step.kind == "answer":
            calls.append(_event(sid, messages, tools, _completion_ids(tokenizer, {"answer": str(step.result)}), task,
                                {"role": "assistant", "content": str(step.result)}))
    return Attempt(task.id, task.suite, 0, sid, float(verdict.reward), bool(verdict.passed), None, calls,
                   demonstration=True)


def _event(sid: str, messages: list[dict[str, Any]], tools: list[dict[str, Any]], ids: tuple[int, ...],
           task: Any, response: dict[str, Any]) -> ExperienceEvent:
    return ExperienceEvent(kind="model_call", session_id=sid, messages=list(messages), tools=tools,
                           response=response, completion_token_ids=list(ids),
                           # One call per turn, as the model agent asks (agentscore.parallel_tool_calls = false): the
                           # learner renders the prompt the engine saw for such a request.
                           metadata={"task_id": task.id, "source": "oracle", "parallel_tool_calls": False})


def demonstrations(tokenizer: Any, suites: Sequence[str], tasks_per_suite: int | None = None,
                   practice_per_template: int = 0, *, settings: EnvSettings) -> list[Attempt]:
    """Oracle attempts for the train tasks of `suites` (only those the checker passes), plus
    `practice_per_template` fresh train instances per template from the suite's generator (never a dev/test task).
    """
    from blacksoil.agentscore import api

    out = []
    for suite in suites:
        tasks = api.list_tasks(suite, "train")
        tasks = tasks[:tasks_per_suite] if tasks_per_suite else tasks
        if practice_per_template:
            tasks = [*tasks, *api.practice_tasks(suite, practice_per_template, settings=settings)]
        for task in tasks:
            a = oracle_attempt(tokenizer, task, settings)
            if a.passed:
                out.append(a)
    return out


def demonstrations_on(cores: Sequence[int], info: BaseModelInfo, suites: Sequence[str], practice_per_template: int = 0,
                      *, settings: EnvSettings, tokenizer: Any = None) -> list[Attempt]:
    """`demonstrations` in a child process pinned to `cores`; in this process with `tokenizer` when `cores` is ()
    (nothing else shares the machine: `learn` and `demo`)."""
    if not cores:
        if tokenizer is None:
            raise ConfigError("demonstrations in this process need the tokenizer")
        return demonstrations(tokenizer, suites, practice_per_template=practice_per_template, settings=settings)
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"), initializer=_pin,
                             initargs=(tuple(cores),)) as pool:
        return pool.submit(_child, info, tuple(suites), practice_per_template, settings).result()


def _pin(cores: tuple[int, ...]) -> None:
    os.sched_setaffinity(0, set(cores))


def _child(info: BaseModelInfo, suites: tuple[str, ...], practice_per_template: int,
           settings: EnvSettings) -> list[Attempt]:
    from blacksoil.learning.basemodel import load_tokenizer

    return demonstrations(load_tokenizer(info), suites, practice_per_template=practice_per_template,
                          settings=settings)
