"""Regression tests of issue 22 on the shared real gateway: abandoned work, limits, ack-before-save, bad input.

Each test failed on the code before the fix (see the issue's numbered findings).
"""

from __future__ import annotations

import contextlib
import threading
import time
from typing import Any

import httpx
import pytest

from blacksoil.contracts import ExperienceEvent
from blacksoil.experience.sink import ListSink
from blacksoil.serving.engine import LlamaCppEngine
from blacksoil.serving.launch import GatewayHandle

CHAT = "/v1/chat/completions"
HI = [{"role": "user", "content": "hi"}]


def _post(gw: GatewayHandle, body: Any, path: str = CHAT, **kw: Any) -> httpx.Response:
    return httpx.post(gw.url + path, json=body, timeout=60, **kw)


def _error(r: httpx.Response) -> dict[str, Any]:
    err: dict[str, Any] = r.json()["error"]
    return err


def _engine_busy_slots(gw: GatewayHandle) -> int:
    engine = gw.pool.replicas["r0"].engine
    assert isinstance(engine, LlamaCppEngine)
    slots = httpx.get(engine.root_url + "/slots", headers=engine.auth_headers(), timeout=10).json()
    return sum(bool(s.get("is_processing")) for s in slots)


def _inflight_after(gw: GatewayHandle, seconds: float) -> int:
    """Requests r0 still counts once they are all gone or `seconds` have passed."""
    deadline = time.monotonic() + seconds
    while gw.pool.inflight("r0") and time.monotonic() < deadline:
        time.sleep(0.05)
    return gw.pool.inflight("r0")


# -- finding 1: abandoned work, limits --

def test_client_disconnect_cancels_a_non_streaming_request(gw: GatewayHandle) -> None:
    body = {"model": gw.model, "prompt": "Count: 1, 2,", "max_tokens": 400, "ignore_eos": True}
    with pytest.raises(httpx.TimeoutException):
        httpx.post(gw.url + "/v1/completions", json=body, timeout=1.5)  # the client gives up mid-generation
    assert _inflight_after(gw, 3.0) == 0


def test_client_disconnect_frees_the_engine_slot(gw: GatewayHandle) -> None:
    body = {"model": gw.model, "prompt": "Count: 1, 2,", "max_tokens": 400, "ignore_eos": True}
    with pytest.raises(httpx.TimeoutException):
        httpx.post(gw.url + "/v1/completions", json=body, timeout=1.5)
    deadline = time.monotonic() + 3
    while _engine_busy_slots(gw) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _engine_busy_slots(gw) == 0


def test_stream_disconnect_frees_the_engine_slot(gw: GatewayHandle) -> None:
    body = {"model": gw.model, "prompt": "Count: 1, 2,", "max_tokens": 400, "ignore_eos": True, "stream": True}
    with httpx.stream("POST", gw.url + "/v1/completions", json=body, timeout=60) as r:
        for i, _ in enumerate(r.iter_lines()):
            if i == 3:
                break  # hang up mid-stream
    deadline = time.monotonic() + 3
    while _engine_busy_slots(gw) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _engine_busy_slots(gw) == 0


def test_running_gauge_returns_to_zero_after_disconnect(gw: GatewayHandle) -> None:
    body = {"model": gw.model, "prompt": "Count: 1, 2,", "max_tokens": 400, "ignore_eos": True}
    with pytest.raises(httpx.TimeoutException):
        httpx.post(gw.url + "/v1/completions", json=body, timeout=1.5)
    time.sleep(1.0)
    metrics = httpx.get(gw.url + "/metrics").text
    assert "blacksoil:num_requests_running 0.0" in metrics


@pytest.mark.parametrize(("field", "value"), [
    ("n_predict", 300), ("id_slot", 0), ("lora", [{"id": 0, "scale": 1.0}]), ("slot_id", 1),
    ("cache_prompt", False), ("n_probs", 5),
])
def test_engine_specific_fields_are_refused_by_name(gw: GatewayHandle, field: str, value: Any) -> None:
    r = _post(gw, {"messages": HI, "max_tokens": 4, field: value})
    assert (r.status_code, _error(r)["param"], _error(r)["code"]) == (400, field, "unknown_field")


def test_n_above_one_is_refused(gw: GatewayHandle) -> None:
    r = _post(gw, {"messages": HI, "max_tokens": 2, "n": 4})
    assert (r.status_code, _error(r)["param"]) == (400, "n")


def test_prompt_lists_are_refused(gw: GatewayHandle) -> None:
    r = _post(gw, {"prompt": ["a", "b", "c"], "max_tokens": 2}, path="/v1/completions")
    assert (r.status_code, _error(r)["param"]) == (400, "prompt")


def test_max_tokens_above_the_cap_is_refused(gw: GatewayHandle) -> None:
    r = _post(gw, {"prompt": "Count: 1, 2,", "max_tokens": 100000}, path="/v1/completions")
    assert (r.status_code, _error(r)["param"], _error(r)["code"]) == (400, "max_tokens", "max_tokens_too_large")


def test_max_tokens_is_capped_by_the_context_per_slot(gw: GatewayHandle) -> None:
    cfg = gw.pool.config
    r = _post(gw, {"messages": HI, "max_completion_tokens": cfg.ctx // cfg.slots + 1})
    assert (r.status_code, _error(r)["param"]) == (400, "max_completion_tokens")


# -- finding 2: the event is saved before the stream's last byte --

class _SlowSink(ListSink):
    """Takes its time to store an event, like an fsync on a busy disk."""

    def emit(self, event: ExperienceEvent) -> None:
        time.sleep(0.5)
        super().emit(event)


def test_stream_event_is_stored_before_done(gw: GatewayHandle) -> None:
    gateway = gw.app.state.gateway
    sink, old = _SlowSink(), gateway.sink
    gateway.sink = sink
    stored_at_done = -1
    try:
        body = {"model": gw.model, "messages": HI, "max_tokens": 4, "stream": True, "user": "ack-before-save"}
        with httpx.stream("POST", gw.url + CHAT, json=body, timeout=60) as r:
            for line in r.iter_lines():
                if line == "data: [DONE]":
                    stored_at_done = len(sink.events)
    finally:
        gateway.sink = old
    assert stored_at_done == 1


# -- finding 4: client input never gives a 500, every error has the one shape --

@pytest.mark.parametrize("path", [CHAT, "/v1/completions"])
def test_text_plain_body_is_415(gw: GatewayHandle, path: str) -> None:
    r = httpx.post(gw.url + path, content=b'{"prompt": "hi"}', headers={"Content-Type": "text/plain"}, timeout=30)
    assert (r.status_code, _error(r)["code"]) == (415, "unsupported_media_type")


def test_lone_surrogate_is_400(gw: GatewayHandle) -> None:
    raw = b'{"messages": [{"role": "user", "content": "hi \\ud800"}], "max_tokens": 2}'
    r = httpx.post(gw.url + CHAT, content=raw, headers={"Content-Type": "application/json"}, timeout=30)
    assert (r.status_code, _error(r)["param"]) == (400, "messages.0.content")


@pytest.mark.parametrize("stream", ["false", "true"])
def test_nan_seed_is_400(gw: GatewayHandle, stream: str) -> None:
    raw = ('{"messages": [{"role": "user", "content": "hi"}], "max_tokens": 2, "seed": NaN, "stream": '
           + stream + "}").encode()
    r = httpx.post(gw.url + CHAT, content=raw, headers={"Content-Type": "application/json"}, timeout=30)
    assert (r.status_code, _error(r)["param"]) == (400, "seed")


@pytest.mark.parametrize(("message", "param"), [
    ({"role": "user", "content": [{"type": "text", "text": 5}]}, "messages.0.content"),
    ({"role": "assistant", "content": None, "tool_calls": "junk"}, "messages.0.tool_calls"),
])
def test_malformed_message_parts_are_400(gw: GatewayHandle, message: dict[str, Any], param: str) -> None:
    r = _post(gw, {"messages": [message], "max_tokens": 2})
    assert r.status_code == 400 and _error(r)["param"].startswith(param)


def _nested(levels: int) -> dict[str, Any]:
    node: dict[str, Any] = {"type": "string"}
    for _ in range(levels):
        node = {"type": "object", "properties": {"x": node}}
    return node


def test_deeply_nested_tool_schema_is_400(gw: GatewayHandle) -> None:
    tool = {"type": "function", "function": {"name": "f", "parameters": _nested(120)}}
    r = _post(gw, {"messages": HI, "tools": [tool], "max_tokens": 2})
    assert (r.status_code, _error(r)["code"]) == (400, "too_deep")


def test_deeply_nested_messages_are_400(gw: GatewayHandle) -> None:
    deep: Any = "x"
    for _ in range(900):
        deep = [deep]
    r = _post(gw, {"messages": [{"role": "user", "content": "hi", "extra": deep}], "max_tokens": 2})
    assert (r.status_code, _error(r)["code"]) == (400, "too_deep")


def test_stream_failing_inside_still_ends_with_done(gw: GatewayHandle, monkeypatch: pytest.MonkeyPatch) -> None:
    import blacksoil.serving.gateway as gateway_module

    def broken(*_: Any) -> tuple[list[int], list[float]]:
        raise KeyError("bug")

    monkeypatch.setattr(gateway_module, "_token_info", broken)
    with httpx.stream("POST", gw.url + CHAT, json={"messages": HI, "max_tokens": 2, "stream": True},
                      timeout=60) as r:
        lines = [line for line in r.iter_lines() if line]
    assert lines[-1] == "data: [DONE]" and '"internal_error"' in lines[-2]


# -- finding 7: /health, the engine's own door, a hung engine --

def test_health_does_not_advertise_engine_urls(gw: GatewayHandle) -> None:
    engine = gw.pool.replicas["r0"].engine
    assert engine.root_url.split("//")[1] not in httpx.get(gw.url + "/health").text


def test_engine_refuses_requests_without_the_gateway_key(gw: GatewayHandle) -> None:
    engine = gw.pool.replicas["r0"].engine
    r = httpx.post(engine.api_base + "/chat/completions", json={"messages": HI, "max_tokens": 1}, timeout=30)
    assert r.status_code == 401


def test_concurrent_disconnects_leave_no_slot_behind(gw: GatewayHandle) -> None:
    body = {"model": gw.model, "prompt": "Count: 1, 2,", "max_tokens": 400, "ignore_eos": True}

    def hang_up() -> None:
        with contextlib.suppress(httpx.TimeoutException):
            httpx.post(gw.url + "/v1/completions", json=body, timeout=1.0)

    threads = [threading.Thread(target=hang_up) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert _inflight_after(gw, 4.0) == 0


def test_a_stream_abandoned_while_queued_gives_its_place_back(gw: GatewayHandle) -> None:
    """The client of a queued stream hangs up; once admitted, its response never starts (so the SSE generator that
    releases the place never runs): the place must come back anyway."""
    places = gw.pool.admission.replicas["r0"].concurrency
    body = {"model": gw.model, "prompt": "Count: 1, 2,", "max_tokens": 40, "ignore_eos": True}
    busy = [threading.Thread(target=_post, args=(gw, body, "/v1/completions")) for _ in range(places)]
    for t in busy:
        t.start()
    deadline = time.monotonic() + 30
    while gw.pool.inflight("r0") < places and time.monotonic() < deadline:
        time.sleep(0.02)
    with contextlib.suppress(httpx.TimeoutException), httpx.stream(
            "POST", gw.url + "/v1/completions", json={**body, "stream": True}, timeout=0.5) as r:
        r.read()
    for t in busy:
        t.join()
    assert _inflight_after(gw, 4.0) == 0
