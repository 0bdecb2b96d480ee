"""Every 4xx/5xx answers the one error shape {"error": {message, type, code, param}} naming the bad field."""

from __future__ import annotations

from typing import Any

import httpx
import openai
import pytest

from blacksoil.serving.launch import GatewayHandle

CHAT = "/v1/chat/completions"
OK_MSG = [{"role": "user", "content": "hi"}]


def _post(gw: GatewayHandle, body: Any, path: str = CHAT, **kw: Any) -> httpx.Response:
    if isinstance(body, str | bytes):
        return httpx.post(gw.url + path, content=body, headers={"Content-Type": "application/json"}, timeout=60, **kw)
    return httpx.post(gw.url + path, json=body, timeout=60, **kw)


def _check(r: httpx.Response, status: int, param: str | None = None, code: str | None = None) -> dict[str, Any]:
    assert r.status_code == status, r.text
    body = r.json()
    assert set(body) == {"error"} and set(body["error"]) == {"message", "type", "code", "param"}, body
    err: dict[str, Any] = body["error"]
    assert isinstance(err["message"], str) and len(err["message"]) > 10
    if param is not None:
        assert err["param"] == param, err
        assert param.split(".")[0].split("[")[0] in err["message"], err  # the message names the field too
    if code is not None:
        assert err["code"] == code, err
    return err


@pytest.mark.parametrize(("body", "param"), [
    ({"model": "x"}, "messages"),
    ({"messages": "hello"}, "messages"),
    ({"messages": []}, "messages"),
    ({"messages": [{"role": "robot", "content": "hi"}]}, "messages.0.role"),
    ({"messages": OK_MSG, "max_tokens": "many"}, "max_tokens"),
    ({"messages": OK_MSG, "max_tokens": 0}, "max_tokens"),
    ({"messages": OK_MSG, "temperature": 7}, "temperature"),
    ({"messages": OK_MSG, "stream": "perhaps"}, "stream"),
    ({"messages": OK_MSG, "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": 5}}}]},
     "tools[0].function.parameters"),
    ({"messages": OK_MSG, "tools": [{"type": "function", "function": {"name": "f"}}],
      "tool_choice": {"type": "function", "function": {"name": "g"}}}, "tool_choice"),
    ({"messages": OK_MSG, "response_format": {"type": "yaml"}}, "response_format"),
])
def test_bad_fields_are_400_naming_the_field(gw: GatewayHandle, body: dict[str, Any], param: str) -> None:
    _check(_post(gw, body), 400, param)


def test_malformed_json(gw: GatewayHandle) -> None:
    err = _check(_post(gw, b'{"messages": [ {"role": "user", '), 400, code="invalid_json")
    assert "JSON" in err["message"]
    _check(_post(gw, b"[1, 2]"), 400)  # valid JSON, wrong shape


def test_unknown_model_is_404(gw: GatewayHandle) -> None:
    _check(_post(gw, {"model": "gpt-7", "messages": OK_MSG}), 404, "model", "model_not_found")
    client = openai.OpenAI(base_url=gw.openai_base_url, api_key="x", max_retries=0)
    with pytest.raises(openai.NotFoundError, match="gpt-7"):
        client.chat.completions.create(model="gpt-7", messages=OK_MSG)  # type: ignore[arg-type]


def test_prompt_over_the_context_window(gw: GatewayHandle) -> None:
    long = [{"role": "user", "content": "word " * 3000}]
    err = _check(_post(gw, {"model": gw.model, "messages": long}), 400, "messages", "context_length_exceeded")
    assert "context" in err["message"]


def test_routes_methods_and_headers(gw: GatewayHandle) -> None:
    _check(httpx.get(gw.url + "/v2/nothing"), 404)
    _check(httpx.get(gw.url + CHAT), 405)
    _check(_post(gw, {"messages": OK_MSG}, headers={"X-Priority": "urgent"}), 400, "priority")
    _check(_post(gw, {"prompt": ""}, path="/v1/completions"), 400, "prompt")
