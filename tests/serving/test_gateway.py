"""The gateway end to end on the real embedded engine, through the official openai SDK."""

from __future__ import annotations

import asyncio
import json
import time

import httpx
import openai
import pytest

from blacksoil.config import load_settings
from blacksoil.experience.sink import JsonlSink
from blacksoil.serving.gateway import prefix_key
from blacksoil.serving.launch import GatewayHandle, experience_path

WEATHER = {"type": "function", "function": {"name": "get_weather", "description": "Weather of a city",
                                            "parameters": {"type": "object",
                                                           "properties": {"city": {"type": "string"}}}}}
TIME = {"type": "function", "function": {"name": "get_time", "description": "Current time in a timezone",
                                         "parameters": {"type": "object", "properties": {"tz": {"type": "string"}}}}}
ASK = [{"role": "user", "content": "What is the weather in Paris?"}]


def _client(gw: GatewayHandle) -> openai.OpenAI:
    return openai.OpenAI(base_url=gw.openai_base_url, api_key="unused", max_retries=0, timeout=120)


def test_chat_non_stream_and_stream(gw: GatewayHandle) -> None:
    c = _client(gw)
    r = c.chat.completions.create(model=gw.model, messages=[{"role": "user", "content": "Say hello"}], max_tokens=8,
                                  temperature=0)
    assert r.model == gw.model and r.choices[0].message.content and r.usage and r.usage.completion_tokens > 0
    assert r.choices[0].logprobs is None  # not asked for: the gateway's own token capture stays internal
    chunks = list(c.chat.completions.create(model=gw.model, messages=[{"role": "user", "content": "Say hello"}],
                                            max_tokens=8, temperature=0, stream=True,
                                            stream_options={"include_usage": True}))
    text = "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
    assert text == r.choices[0].message.content  # greedy: same text streamed or not
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == r.usage.completion_tokens


def test_legacy_completions(gw: GatewayHandle) -> None:
    r = _client(gw).completions.create(model=gw.model, prompt="The capital of France is", max_tokens=4,
                                       temperature=0)
    assert r.choices[0].text


@pytest.mark.parametrize("choice", ["auto", "required", "named"])
def test_tool_calls(gw: GatewayHandle, choice: str) -> None:
    tool_choice = {"type": "function", "function": {"name": "get_weather"}} if choice == "named" else choice
    r = _client(gw).chat.completions.create(model=gw.model, messages=ASK, tools=[WEATHER, TIME],
                                            tool_choice=tool_choice, max_tokens=48, temperature=0)  # type: ignore[arg-type]
    msg = r.choices[0].message
    assert r.choices[0].finish_reason == "tool_calls", msg
    assert msg.tool_calls and msg.tool_calls[0].type == "function"
    assert msg.tool_calls[0].function.name == "get_weather"
    assert set(json.loads(msg.tool_calls[0].function.arguments)) == {"city"}  # `required` inferred: never `{}`


def test_tool_choice_none_answers_in_text_and_stream_emits_tool_calls(gw: GatewayHandle) -> None:
    c = _client(gw)
    r = c.chat.completions.create(model=gw.model, messages=ASK, tools=[WEATHER], tool_choice="none", max_tokens=12,
                                  temperature=0)
    assert r.choices[0].finish_reason in ("stop", "length") and not r.choices[0].message.tool_calls
    chunks = list(c.chat.completions.create(model=gw.model, messages=ASK, tools=[WEATHER], tool_choice="required",
                                            max_tokens=96, temperature=0, stream=True))
    calls = [tc for ch in chunks if ch.choices for tc in (ch.choices[0].delta.tool_calls or [])]
    assert calls and calls[0].function and calls[0].function.name == "get_weather"
    assert chunks[-1].choices[0].finish_reason == "tool_calls"


def test_json_schema_response_format(gw: GatewayHandle) -> None:
    schema = {"type": "object", "properties": {"city": {"type": "string"}, "population": {"type": "integer"}}}
    r = _client(gw).chat.completions.create(
        model=gw.model, messages=[{"role": "user", "content": "Describe Paris as JSON."}], max_tokens=60,
        temperature=0, response_format={"type": "json_schema", "json_schema": {"name": "city", "schema": schema}})
    data = json.loads(r.choices[0].message.content or "")
    assert set(data) == {"city", "population"} and isinstance(data["population"], int)


def test_models_health_metrics(gw: GatewayHandle) -> None:
    models = _client(gw).models.list()
    assert [m.id for m in models.data] == [gw.model]
    health = httpx.get(gw.url + "/health").json()
    assert health["status"] == "ok" and health["replicas"][0]["adapter_version"] == "base"
    text = httpx.get(gw.url + "/metrics").text
    for name in ("time_to_first_token_seconds_bucket", "inter_token_latency_seconds_bucket",
                 "e2e_request_latency_seconds_bucket", "request_queue_time_seconds_bucket", "prompt_tokens_total",
                 "generation_tokens_total", "prefix_cache_hits_total"):
        assert f"blacksoil:{name}" in text, name
    assert 'adapter_version="base"' in text and f'model_name="{gw.model}"' in text


def test_session_affinity_reuses_the_prefix(gw: GatewayHandle) -> None:
    c = _client(gw)
    history = [{"role": "system", "content": "You are a careful assistant. " * 20},
               {"role": "user", "content": "Name a color."}]
    first = c.chat.completions.create(model=gw.model, messages=history, max_tokens=4, temperature=0,
                                      user="sess-affinity")
    assert first.usage
    other = [{"role": "user", "content": "Something unrelated " * 10}]
    for i in range(3):  # other sessions come and go meanwhile
        c.chat.completions.create(model=gw.model, messages=other, max_tokens=2, user=f"other-{i}")
    history.append({"role": "assistant", "content": "Blue."})
    history.append({"role": "user", "content": "Another one."})
    r = c.chat.completions.create(model=gw.model, messages=history, max_tokens=4, temperature=0,
                                  extra_headers={"X-Session-Id": "sess-affinity"})
    assert r.usage and r.usage.prompt_tokens_details and r.usage.prompt_tokens_details.cached_tokens
    # the whole first prompt came from the slot's cache, despite three other sessions in between
    assert r.usage.prompt_tokens_details.cached_tokens >= first.usage.prompt_tokens - 8
    home = gw.pool.admission.affinity["sess-affinity"]
    assert home[0] in gw.pool.replicas


def test_full_queue_answers_429_with_retry_after(gw: GatewayHandle) -> None:
    sched = gw.pool.admission
    old = sched.queue_max
    sched.queue_max = 1

    async def run() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=gw.url, timeout=120) as client:
            body = {"model": gw.model, "messages": [{"role": "user", "content": "Count to fifty."}],
                    "max_tokens": 24}
            tasks = [asyncio.create_task(client.post("/v1/chat/completions", json=body)) for _ in range(6)]
            return list(await asyncio.gather(*tasks))

    try:
        responses = asyncio.run(run())
    finally:
        sched.queue_max = old
    codes = sorted(r.status_code for r in responses)
    assert 429 in codes and 200 in codes, codes
    busy = next(r for r in responses if r.status_code == 429)
    assert int(busy.headers["Retry-After"]) >= 1
    assert busy.json()["error"]["type"] == "rate_limit_error"


def test_experience_events_are_written(gw: GatewayHandle) -> None:
    _client(gw).chat.completions.create(model=gw.model, messages=[{"role": "user", "content": "Hi"}], max_tokens=4,
                                        user="exp-session", extra_headers={"X-Tenant": "acme"})
    events = [e for e in JsonlSink(experience_path(load_settings())).read() if e.session_id == "exp-session"]
    assert len(events) == 1
    e = events[0]
    assert e.kind == "model_call" and e.tenant == "acme" and e.model == gw.model and e.adapter_version is None
    assert e.messages == [{"role": "user", "content": "Hi"}] and e.response["content"]
    # One id per generated token, except the end of turn llama.cpp stops on (counted, but given no logprob entry;
    # the learner closes such a call with it, see learning.source.engine_ids).
    stopped = e.metadata["finish_reason"] == "stop"
    assert e.completion_token_ids and len(e.completion_token_ids) + stopped == e.usage["completion_tokens"]
    assert e.completion_logprobs and all(lp <= 0 for lp in e.completion_logprobs)
    assert e.timings["e2e_s"] >= e.timings["ttft_s"] > 0


def test_client_disconnect_frees_the_slot(gw: GatewayHandle) -> None:
    body = {"model": gw.model, "messages": [{"role": "user", "content": "Tell a long story."}], "max_tokens": 200,
            "stream": True, "ignore_eos": True}
    with httpx.stream("POST", gw.url + "/v1/chat/completions", json=body, timeout=120) as r:
        seen = 0
        for line in r.iter_lines():
            seen += line.startswith("data: ")
            if seen == 3:
                break  # hang up mid-stream
    deadline = time.monotonic() + 5  # far less than the ~200 tokens the stream still had to go
    while gw.pool.inflight("r0") and time.monotonic() < deadline:
        time.sleep(0.1)
    assert gw.pool.inflight("r0") == 0
    r2 = _client(gw).chat.completions.create(model=gw.model, messages=[{"role": "user", "content": "Hi"}],
                                             max_tokens=2)
    assert r2.choices[0].message.content is not None


AGENT = "You are the plant maintenance agent. Use the tools to read sensors and file work orders. " * 4


def _chat(system: str, user: str, **extra: object) -> dict[str, object]:
    return {"messages": [{"role": "system", "content": system}, {"role": "user", "content": user}], **extra}


def test_sessions_sharing_a_system_prompt_share_a_prefix_key() -> None:
    assert prefix_key(_chat(AGENT, "Pump 3 is loud.")) == prefix_key(_chat(AGENT, "Valve 7 leaks."))


def test_a_different_system_prompt_has_another_prefix_key() -> None:
    assert prefix_key(_chat(AGENT, "Pump 3 is loud.")) != prefix_key(_chat(AGENT + " Be brief.", "Pump 3 is loud."))


def test_tools_are_part_of_the_prefix_key() -> None:
    assert prefix_key(_chat(AGENT, "Hi", tools=[WEATHER])) != prefix_key(_chat(AGENT, "Hi", tools=[TIME]))


def test_a_short_system_prompt_has_no_prefix_key() -> None:
    assert prefix_key(_chat("You are a helpful assistant.", "Hi")) is None


def test_the_gateway_places_a_session_with_its_prefix_key(gw: GatewayHandle) -> None:
    body = _chat(AGENT, "Name a pump.")
    r = httpx.post(gw.openai_base_url + "/chat/completions", timeout=120,
                   json=body | {"model": gw.model, "max_tokens": 2, "user": "sess-prefix"})
    assert r.status_code == 200, r.text
    where, slot = gw.pool.admission.affinity["sess-prefix"]
    assert gw.pool.admission.replicas[where].slot_prefix[slot] == prefix_key(body)
