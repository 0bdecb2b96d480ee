"""Real agent frameworks as gateway clients: a one-tool question ends in a call and an answer, never a loop.

Pydantic AI (`pydantic-ai-slim[openai]`) and the OpenAI Agents SDK (`openai-agents`, chat-completions model,
also streamed), both pointed at the real gateway on the default model.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from blacksoil.serving.bench_tools import MAX_TOKENS, weather
from blacksoil.serving.launch import GatewayHandle

QUESTION = "What is the weather in Paris?"


def _pydantic_ai(gw: GatewayHandle) -> tuple[Any, list[str]]:
    from pydantic_ai import Agent
    from pydantic_ai.models.openai import OpenAIChatModel
    from pydantic_ai.providers.openai import OpenAIProvider
    from pydantic_ai.settings import ModelSettings

    ran: list[str] = []
    model = OpenAIChatModel(gw.model, provider=OpenAIProvider(base_url=gw.openai_base_url, api_key="unused"))
    agent = Agent(model, model_settings=ModelSettings(max_tokens=MAX_TOKENS, temperature=0.0))

    @agent.tool_plain
    def get_weather(city: str) -> str:
        """Current weather of a city."""
        ran.append(city)
        return weather(city)

    return asyncio.run(agent.run(QUESTION)), ran


@pytest.fixture(scope="module")
def pydantic_run(gw: GatewayHandle) -> tuple[Any, list[str]]:
    pytest.importorskip("pydantic_ai")
    return _pydantic_ai(gw)


def test_pydantic_ai_needs_at_most_two_model_calls(pydantic_run: tuple[Any, list[str]]) -> None:
    assert pydantic_run[0].usage.requests <= 2


def test_pydantic_ai_runs_the_tool_at_most_once(pydantic_run: tuple[Any, list[str]]) -> None:
    assert len(pydantic_run[1]) <= 1


def test_pydantic_ai_ends_with_text(pydantic_run: tuple[Any, list[str]]) -> None:
    assert isinstance(pydantic_run[0].output, str) and pydantic_run[0].output


def _openai_agents(gw: GatewayHandle, streamed: bool) -> tuple[Any, list[str]]:
    from openai import AsyncOpenAI

    from agents import Agent, ModelSettings, OpenAIChatCompletionsModel, Runner, function_tool, set_tracing_disabled

    set_tracing_disabled(True)  # its default exporter posts to api.openai.com
    ran: list[str] = []

    @function_tool
    def get_weather(city: str) -> str:
        """Current weather of a city."""
        ran.append(city)
        return weather(city)

    client = AsyncOpenAI(base_url=gw.openai_base_url, api_key="unused", max_retries=0)
    # tool_choice "required" with the SDK's default reset_tool_choice: the first call must be a tool call, the
    # next is "auto", where the model may repeat the call the gateway has already answered.
    agent = Agent(name="weather", instructions="Answer questions about the weather.", tools=[get_weather],
                  model=OpenAIChatCompletionsModel(model=gw.model, openai_client=client),
                  model_settings=ModelSettings(max_tokens=MAX_TOKENS, temperature=0.0, tool_choice="required"))

    async def run() -> Any:
        if not streamed:
            return await Runner.run(agent, QUESTION, max_turns=6)
        result = Runner.run_streamed(agent, QUESTION, max_turns=6)
        async for _ in result.stream_events():
            pass
        return result

    return asyncio.run(run()), ran


@pytest.fixture(scope="module", params=[False, True], ids=["plain", "streamed"])
def agents_run(gw: GatewayHandle, request: pytest.FixtureRequest) -> tuple[Any, list[str]]:
    pytest.importorskip("agents")
    return _openai_agents(gw, request.param)


def test_openai_agents_needs_at_most_two_model_calls(agents_run: tuple[Any, list[str]]) -> None:
    assert len(agents_run[0].raw_responses) <= 2


def test_openai_agents_runs_the_tool_once(agents_run: tuple[Any, list[str]]) -> None:
    assert len(agents_run[1]) == 1


def test_openai_agents_ends_with_text(agents_run: tuple[Any, list[str]]) -> None:
    assert isinstance(agents_run[0].final_output, str) and agents_run[0].final_output
