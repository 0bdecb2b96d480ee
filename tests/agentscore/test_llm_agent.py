"""The built-in tool-calling loop against an OpenAI-compatible server over HTTP (scripted model)."""

from __future__ import annotations

import pytest

from blacksoil.agentscore import api
from blacksoil.config import load_settings
from blacksoil.factories.env_settings import EnvSettings

from .conftest import ScriptedChat


def test_loop_calls_tools_feeds_results_back_and_scores(scripted_chat: tuple[ScriptedChat, str],
                                                        env_settings: EnvSettings) -> None:
    chat, url = scripted_chat
    task = api.get_task("tools-basic", "tb-calc-save-1")
    expr = task.oracle[0].args["expression"]
    chat.tool_call("calculator", f'{{"expression": "{expr}"}}')
    chat.tool_call("save_number", '{"key": "oops", "value": "x"}')  # bad type: the error goes back to the model
    chat.tool_call("save_number", '{"key": "oops", "value": ')  # not JSON at all
    value = eval(expr)
    key = task.checker[0].path.split(".")[1]  # type: ignore[union-attr]
    chat.tool_call("save_number", f'{{"key": "{key}", "value": {value}}}')
    chat.say(f"Saved {value}.")
    ep = api.run_task(api.make_agent("llm", base_url=url, model="scripted"), task,
                      settings=env_settings)
    assert ep.passed and ep.reward == 1.0
    assert ep.model_calls == 5 and ep.tool_calls == 4 and ep.tool_errors == 2
    assert ep.prompt_tokens == 500 and ep.completion_tokens == 50
    # The model saw the tools of the task and the tool results, including the error naming the argument.
    first, last = chat.requests[0], chat.requests[-1]
    assert {t["function"]["name"] for t in first["tools"]} == set(task.tools)
    tool_msgs = [m["content"] for m in last["messages"] if m["role"] == "tool"]
    assert "'value'" in tool_msgs[1] and "error" in tool_msgs[1]
    assert "invalid JSON" in tool_msgs[2]
    assert str(value) in tool_msgs[0]


def test_step_budget_and_loop_stop(scripted_chat: tuple[ScriptedChat, str], env_settings: EnvSettings) -> None:
    chat, url = scripted_chat
    task = api.get_task("tools-basic", "tb-calc-save-1")
    for _ in range(5):
        chat.tool_call("calculator", '{"expression": "1/0"}')
    ep = api.run_task(api.make_agent("llm", base_url=url, model="scripted", step_budget=10), task,
                      settings=env_settings)
    assert not ep.passed and ep.trajectory["stopped"] == "loop" and ep.tool_errors == 3
    chat.replies.clear()
    for _ in range(5):  # a call that succeeds, repeated word for word, is a loop too: its answer will not change
        chat.tool_call("calculator", '{"expression": "2 + 2"}')
    ep = api.run_task(api.make_agent("llm", base_url=url, model="scripted", step_budget=10), task,
                      settings=env_settings)
    assert not ep.passed and ep.trajectory["stopped"] == "loop" and ep.model_calls == 3 and ep.tool_errors == 0
    chat.replies.clear()
    for i in range(5):
        chat.tool_call("calculator", f'{{"expression": "{i} + 1"}}')
    ep = api.run_task(api.make_agent("llm", base_url=url, model="scripted", step_budget=2), task,
                      settings=env_settings)
    assert ep.trajectory["stopped"] == "step_budget" and ep.model_calls == 2


def test_unreachable_endpoint_fails_the_episode_not_the_run(env_settings: EnvSettings) -> None:
    task = api.get_task("tools-basic", "tb-calc-save-1")
    ep = api.run_task(api.make_agent("llm", base_url="http://127.0.0.1:9/v1", model="m"), task,
                      settings=env_settings)
    assert not ep.passed and ep.error and "unreachable" in ep.error


def test_llm_agent_needs_endpoint_and_model() -> None:
    from blacksoil.errors import ConfigError

    with pytest.raises(ConfigError, match="base_url and model"):
        api.make_agent("llm")
    with pytest.raises(ConfigError, match="'gpt'"):
        api.make_agent("gpt")


@pytest.mark.slow
def test_default_model_through_the_real_gateway_runs_a_task(env_settings: EnvSettings) -> None:
    from blacksoil.serving.launch import gateway

    task = api.list_tasks("tools-basic", "dev")[0]
    with gateway(load_settings()) as gw:
        ep = api.run_task(api.make_agent("llm", base_url=gw.openai_base_url, model=gw.model, step_budget=3), task,
                          settings=env_settings)
    assert ep.error is None and ep.model_calls >= 1 and ep.prompt_tokens > 0
    assert 0.0 <= ep.reward <= 1.0
