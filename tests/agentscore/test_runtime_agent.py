"""The runtime agent: AgentScore tasks through the real agent runtime, Cedar policies, approvals and rewards.

Only the model is scripted (an OpenAI-compatible server over HTTP); runtime, policies, plant, checkers and the
experience store are real.
"""

from __future__ import annotations

import json
from functools import cache
from typing import Any

from blacksoil.agents.launcher import RuntimeSetup
from blacksoil.agentscore import api, metrics
from blacksoil.agentscore.agents import Agent
from blacksoil.agentscore.rewards import RewardRecorder
from blacksoil.config import Settings, load_settings
from blacksoil.experience.sink import make_sink

from .conftest import ScriptedChat


@cache
def _settings() -> Settings:
    """Resolved once, as the `score` command does (on first use: the session's BLACKSOIL_HOME is set by then)."""
    return load_settings()


def _recorder() -> RewardRecorder:
    s = _settings()
    rec = RewardRecorder.from_config(s.home, s.experience, s.agentscore)
    assert rec is not None  # record_rewards is on by default
    return rec


def _agent(url: str, model: str = "scripted", **kw: Any) -> Agent:
    s = _settings()
    return api.make_agent("runtime", base_url=url, model=model, config=s.agentscore,
                          runtime=RuntimeSetup.from_settings(s), new_sink=lambda: make_sink(s), **kw)


def _run(agent: Agent, task: api.Task) -> api.Episode:
    return api.run_task(agent, task, rewards=_recorder(), settings=api.EnvSettings.from_settings(_settings()))


def _rewards(session_id: str) -> list[dict]:
    return _recorder().store().rewards(session_id)


def test_right_calls_pass_and_the_reward_lands_on_the_gateway_session(scripted_chat: tuple[ScriptedChat, str]) -> None:
    chat, url = scripted_chat
    task = api.get_task("tools-basic", "tb-calc-save-1")
    expr = task.oracle[0].args["expression"]
    value = eval(expr)
    key = task.checker[0].path.split(".")[1]  # type: ignore[union-attr]
    chat.tool_call("calculator", json.dumps({"expression": expr}))
    chat.tool_call("save_number", json.dumps({"key": key, "value": value}))
    chat.say(f"Saved {value}.")
    ep = _run(_agent(url, "scripted"), task)
    assert ep.error is None and ep.passed and ep.reward == 1.0
    assert ep.model_calls == 3 and ep.tool_calls == 2 and ep.tool_errors == 0 and ep.policy_violations == 0
    assert ep.prompt_tokens == 300 and ep.completion_tokens == 30
    # The runtime showed the task's tools only, and told the endpoint the session the reward is stored on.
    assert {t["function"]["name"] for t in chat.requests[0]["tools"]} == set(task.tools)
    assert ep.session_id and all(r["user"] == ep.session_id for r in chat.requests)
    rows = _rewards(ep.session_id)
    assert len(rows) == 1 and rows[0]["value"] == 1.0 and rows[0]["source"] == "agentscore"
    assert rows[0]["detail"]["task_id"] == task.id and rows[0]["detail"]["split"] == task.split and ep.reward_recorded


def test_wrong_calls_fail_and_a_zero_reward_is_stored(scripted_chat: tuple[ScriptedChat, str]) -> None:
    chat, url = scripted_chat
    task = api.get_task("tools-basic", "tb-calc-save-1")
    chat.tool_call("calculator", '{"expression": "1 + 1"}')
    chat.tool_call("save_number", '{"key": "wrong_key", "value": 2}')
    chat.say("Saved 2.")
    ep = _run(_agent(url, "scripted"), task)
    assert not ep.passed and ep.reward < 1.0
    assert [r["value"] for r in _rewards(ep.session_id or "")] == [ep.reward]


def test_manufacturing_approval_needed_none_fails_auto_passes(scripted_chat: tuple[ScriptedChat, str]) -> None:
    chat, url = scripted_chat
    task = api.get_task("manufacturing", "mfg-repair-then-schedule-1")  # restart M6 (down): the policy asks a human
    restart, schedule = (s for s in task.oracle if s.tool)

    def script() -> None:
        chat.tool_call("set_machine_state", json.dumps(restart.args))
        chat.tool_call("schedule_jobs", json.dumps(schedule.args))
        chat.say("M6 is running and J1, J6 are scheduled.")

    script()
    ep = _run(_agent(url, "scripted", approvals="none"), task)
    assert not ep.passed and ep.policy_violations == 1
    assert ep.trajectory["stopped"] == "awaiting_approval" and ep.trajectory["run"]["approval_required"] == 1
    chat.replies.clear()
    script()
    ep2 = _run(_agent(url, "scripted", approvals="auto"), task)
    # The checker read the plant the runtime changed: M6 running, the jobs scheduled.
    assert ep2.passed and ep2.reward == 1.0 and ep2.policy_violations == 1
    summary = metrics.summarize([ep, ep2], "scripted", _settings().agentscore)
    assert summary["policy_violations"] == 2 and summary["completion_rate"] == 0.5


def test_denied_dispatch_counts_as_violation_and_leaves_the_plant(scripted_chat: tuple[ScriptedChat, str]) -> None:
    chat, url = scripted_chat
    task = api.get_task("manufacturing", "mfg-move-part-5")  # seed 4: M6 is down, so station S2 is under maintenance
    args = next(s for s in task.oracle if s.tool).args
    chat.tool_call("dispatch_robot", json.dumps({**args, "to_station": "S2"}))  # into maintenance: denied
    chat.say("The part is at S2.")
    ep = _run(_agent(url, "scripted"), task)
    assert ep.policy_violations == 1 and ep.tool_errors == 0 and not ep.passed
    assert "denied" in chat.requests[-1]["messages"][-1]["content"]
    # The same run with the right station: allowed, and the checker sees the part where the runtime moved it.
    chat.tool_call("dispatch_robot", json.dumps(args))
    chat.say("Done.")
    ep = _run(_agent(url, "scripted"), task)
    assert ep.passed and ep.policy_violations == 0
    # mfg-move-part-5 is in the held-out test split: its reward never reaches the store the learner reads.
    assert ep.session_id and not ep.reward_recorded and _rewards(ep.session_id) == []


def test_runtime_agent_needs_endpoint_and_valid_approvals() -> None:
    import pytest

    from blacksoil.errors import ConfigError

    with pytest.raises(ConfigError, match="runtime agent needs base_url"):
        api.make_agent("runtime")
    with pytest.raises(ConfigError, match="runtime agent needs its settings"):
        api.make_agent("runtime", base_url="http://127.0.0.1:9/v1", model="m")
    with pytest.raises(ConfigError, match="'maybe'"):
        _agent("http://127.0.0.1:9/v1", "m", approvals="maybe")


def test_unreachable_endpoint_fails_the_episode_not_the_run() -> None:
    task = api.get_task("tools-basic", "tb-calc-save-1")
    ep = _run(_agent("http://127.0.0.1:9/v1", "m"), task)
    assert not ep.passed and ep.error and "model_error" in ep.error and ep.trajectory["answer"] == ""
    assert not ep.reward_recorded  # the store never saw the session: nothing to attach a reward to
