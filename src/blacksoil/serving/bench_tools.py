"""Tool calls as agent clients meet them: parallel calls in one turn, and a real framework's question loop.

Two measures for `blacksoil bench serving` (bench.py adds their keys to its final JSON line):
- `parallel_calls_ok`: share of two-city weather questions answered with a `get_weather` call for every city
  in one assistant turn (official openai SDK, `parallel_tool_calls` left at its default).
- `framework_calls_per_question`: mean model calls Pydantic AI (`pydantic-ai-slim[openai]`, OpenAI provider
  pointed at the gateway) makes for a one-tool question, tool run included; 2 is a call then an answer.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import time
from collections.abc import Callable
from typing import Any

WEATHER_TOOL: dict[str, Any] = {
    "type": "function", "function": {
        "name": "get_weather", "description": "Current weather of a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}
CITY_PAIRS = [("Paris", "Tokyo"), ("Berlin", "Madrid"), ("London", "New York"), ("Oslo", "Cairo"),
              ("Sydney", "Lima"), ("Rome", "Seoul"), ("Boston", "Chicago"), ("Vienna", "Prague"),
              ("Dublin", "Lisbon"), ("Toronto", "Mexico City")]
"""The parallel prompt set: "What is the weather in A and in B?" for each pair."""
QUESTION_CITIES = ["Paris", "Tokyo", "Berlin", "Madrid", "Lima"]
"""One-tool questions for the framework: "What is the weather in C?"."""
MAX_TOKENS = 96
"""Enough for two calls of the compact grammar output (tokens)."""


def weather(city: str) -> str:
    """The tool's answer: fixed, so runs are comparable."""
    return f"Sunny, 21 °C in {city}."


def parallel_calls_ok(base_url: str, model: str, pairs: list[tuple[str, str]] | None = None,
                      on_done: Callable[[], None] | None = None) -> dict[str, Any]:
    """Ask each two-city question once; count the answers that call get_weather for both cities in one turn."""
    import openai

    client = openai.OpenAI(base_url=base_url, api_key="unused", max_retries=0, timeout=600)
    ok, seconds = 0, []
    for a, b in pairs or CITY_PAIRS:
        t0 = time.perf_counter()
        r = client.chat.completions.create(
            model=model, messages=[{"role": "user", "content": f"What is the weather in {a} and in {b}?"}],
            tools=[WEATHER_TOOL], max_tokens=MAX_TOKENS, temperature=0)  # type: ignore[list-item]
        seconds.append(time.perf_counter() - t0)
        cities = {json.loads(c.function.arguments).get("city") for c in r.choices[0].message.tool_calls or []
                  if c.type == "function" and c.function.name == "get_weather"}
        ok += {a, b} <= cities
        if on_done:
            on_done()
    n = len(pairs or CITY_PAIRS)
    return {"parallel_calls_ok": ok / n, "parallel_questions": n, "parallel_s_mean": statistics.mean(seconds)}


async def _framework_question(base_url: str, model: str, city: str) -> tuple[int, str]:
    from pydantic_ai import Agent
    from pydantic_ai.models.openai import OpenAIChatModel
    from pydantic_ai.providers.openai import OpenAIProvider
    from pydantic_ai.settings import ModelSettings

    llm = OpenAIChatModel(model, provider=OpenAIProvider(base_url=base_url, api_key="unused"))
    agent = Agent(llm, model_settings=ModelSettings(max_tokens=MAX_TOKENS, temperature=0.0))

    @agent.tool_plain
    def get_weather(city: str) -> str:
        """Current weather of a city."""
        return weather(city)

    result = await agent.run(f"What is the weather in {city}?")
    return result.usage.requests, str(result.output)


def framework_calls_per_question(base_url: str, model: str, cities: list[str] | None = None,
                                 on_done: Callable[[], None] | None = None) -> dict[str, Any]:
    """Mean model calls Pydantic AI makes per one-tool question (None when pydantic-ai is not installed)."""
    try:
        import pydantic_ai  # noqa: F401
    except ImportError:
        return {"framework_calls_per_question": None,
                "framework_note": "pydantic-ai-slim[openai] is not installed (pip install -e '.[dev]')"}
    calls, seconds = [], []
    for city in cities or QUESTION_CITIES:
        t0 = time.perf_counter()
        n, _ = asyncio.run(_framework_question(base_url, model, city))
        seconds.append(time.perf_counter() - t0)
        calls.append(n)
        if on_done:
            on_done()
    return {"framework_calls_per_question": statistics.mean(calls), "framework_questions": len(calls),
            "framework_calls_max": max(calls), "framework_s_mean": statistics.mean(seconds)}


def run_tools(base_url: str, model: str, *, quick: bool,
              progress: Any = None) -> tuple[dict[str, Any], list[list[str]]]:
    """Both measures against a running gateway: the bench's JSON keys and its table rows."""
    pairs = CITY_PAIRS  # the whole set even when quick: the threshold (≥ 0.9) is a share of ten
    cities = QUESTION_CITIES[:3] if quick else QUESTION_CITIES
    task = progress.add_task("tool calls: parallel, framework", total=len(pairs) + len(cities)) if progress else None

    def done() -> None:
        if progress is not None:
            progress.advance(task)

    par = parallel_calls_ok(base_url, model, pairs, done)
    fw = framework_calls_per_question(base_url, model, cities, done)
    per_q = fw["framework_calls_per_question"]
    rows = [["6 tool calls", f"two-city questions with every call in one turn ({par['parallel_questions']})",
             f"{par['parallel_calls_ok']:.2f}", "", "official openai SDK, parallel_tool_calls default (≥ 0.9)"],
            ["6 tool calls", f"model calls per one-tool question, Pydantic AI ({fw.get('framework_questions', 0)})",
             "n/a" if per_q is None else f"{per_q:.2f}", "", fw.get("framework_note", "call + answer = 2 (≤ 2.5)")]]
    return {k: round(v, 3) if isinstance(v, float) else v for k, v in (par | fw).items()}, rows
