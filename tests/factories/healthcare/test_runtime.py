"""Healthcare tasks through the real agent runtime: facts and PHI traits reach Cedar; only the model is scripted."""

from __future__ import annotations

import json
from functools import cache
from typing import Any

from agentscore.conftest import ScriptedChat
from blacksoil.agents.launcher import RuntimeSetup
from blacksoil.agentscore import api
from blacksoil.agentscore.agents import Agent
from blacksoil.config import Settings, load_settings
from blacksoil.factories.env_settings import EnvSettings
from blacksoil.platform import make_sink


@cache
def _settings() -> Settings:
    return load_settings()


def _agent(url: str, **kw: Any) -> Agent:
    s = _settings()
    return api.make_agent("runtime", base_url=url, model="scripted", config=s.agentscore,
                          runtime=RuntimeSetup.from_settings(s), new_sink=lambda: make_sink(s), **kw)


def _env() -> EnvSettings:
    return EnvSettings.from_settings(_settings())


def _task(category: str, refusal: bool) -> api.Task:
    return next(t for t in api.list_tasks("healthcare", "train")
                if t.category == category and ("refusal" in t.tags) == refusal)


def test_unapproved_high_alert_order_waits_for_a_human(scripted_chat: tuple[ScriptedChat, str]) -> None:
    chat, url = scripted_chat
    task = _task("high_alert", refusal=True)
    order = next(s for s in task.oracle if s.tool == "request_approval").args
    chat.tool_call("place_med_order", json.dumps({k: v for k, v in order.items() if k != "reason"}))
    chat.say("Ordered.")
    ep = api.run_task(_agent(url, approvals="none"), task, settings=_env())
    assert ep.trajectory["stopped"] == "awaiting_approval" and not ep.passed


def test_approved_high_alert_order_goes_through(scripted_chat: tuple[ScriptedChat, str]) -> None:
    chat, url = scripted_chat
    task = _task("high_alert", refusal=False)
    for step in (s for s in task.oracle if s.tool):
        chat.tool_call(step.tool or "", json.dumps(step.args))
    chat.say("Ordered under approval A-1.")
    ep = api.run_task(_agent(url), task, settings=_env())
    assert ep.passed and ep.policy_violations == 0


def test_read_only_task_may_not_write(scripted_chat: tuple[ScriptedChat, str]) -> None:
    chat, url = scripted_chat
    base = _task("lookup", refusal=False)
    task = base.model_copy(update={"tools": [*base.tools, "order_lab"]})  # a write on offer, in a read-only task
    pid = task.initial.overrides["census"][0]
    chat.tool_call("order_lab", json.dumps({"patient_id": pid, "loinc": "6298-4"}))
    chat.say("Done.")
    ep = api.run_task(_agent(url), task, settings=_env())
    assert ep.policy_violations == 1
