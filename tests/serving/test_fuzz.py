"""Fuzz every route of the live platform gateway (issue 22, "done when"): 0 server errors, one error shape.

A hypothesis suite standing in for schemathesis: for every route the running app has (its OpenAPI plus the
routes kept out of the schema), it draws requests from valid examples with one field replaced by hostile JSON
(NaN, lone surrogates, 64-bit overflows, deep nesting, wrong types, unknown fields), arbitrary JSON, raw bytes
and other content types, on the platform as `blacksoil serve` runs it and as `blacksoil up` runs it with API
keys. Every answer must be < 500; every error must be {"error": {message, type, code, param}} with a code,
and never show the server's data directory; every 200 stream must end with [DONE]. Examples are derandomized
and bounded (EXAMPLES per route), so the suite is reproducible and takes one to two minutes per gateway.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.routing import Route

from blacksoil.config import load_settings
from blacksoil.serving.launch import GatewayHandle

from .conftest import KEY

EXAMPLES = 20
BODY_EXAMPLES = 60
"""Routes that take a JSON body get more examples: that is where client input goes deep."""
NASTY_TEXT = ["\ud800", "hi \udfff there", "", " ", "\x00", "a" * 5000, "../../etc/passwd", "%00", "🙂",
              "anna.smith@gmail.com", "123-45-6789", "{{7*7}}", "' OR 1=1 --"]
NASTY_NUMBERS = [float("nan"), float("inf"), -float("inf"), 2**64, -(2**63) - 1, 1e308, -1, 0, 0.5, 10**6]
VALID: dict[str, dict[str, Any]] = {
    "/v1/chat/completions": {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 2},
    "/v1/completions": {"prompt": "hi", "max_tokens": 2},
    "/v1/feedback": {"session_id": "s", "value": 0.5},
    "/v1/console/agents/{run_id}/calls/{call_id}/{decision}": {"by": "alice", "note": ""},
}


def _deep(n: int) -> Any:
    v: Any = "x"
    for _ in range(n):
        v = {"a": v} if n % 2 else [v]
    return v


leaves = (st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | st.text(max_size=12)
          | st.sampled_from(NASTY_TEXT) | st.sampled_from(NASTY_NUMBERS))
json_values = st.recursive(leaves, lambda inner: st.lists(inner, max_size=3)
                           | st.dictionaries(st.text(max_size=8), inner, max_size=3), max_leaves=8)
# Each branch is drawn about as often as the others: the known-bad values come up in most runs of a route.
hostile = st.one_of(
    st.sampled_from(NASTY_TEXT), st.sampled_from(NASTY_NUMBERS), st.builds(_deep, st.integers(20, 200)),
    st.sampled_from([[{"type": "text", "text": 5}], "junk", [{"role": "user", "content": "\ud800"}], {"type": "yaml"},
                     [{"type": "function", "function": {"name": "f", "parameters": _deep(60)}}], [], {}]),
    json_values)
MESSAGE_FIELDS = ["content", "content", "content", "role", "tool_calls", "name", "tool_call_id", "extra"]
GRID_VALUES: list[Any] = ["\ud800", "", float("nan"), float("inf"), 2**64, -1, None, [], {}, "junk", _deep(120),
                          [{"type": "text", "text": 5}]]
"""Every known-bad value is tried in every field of every body route (the grid), besides the random draws."""


def _operations(app: Any) -> list[tuple[str, str]]:
    return _walk(app.routes, "")


def _walk(routes: list[Any], prefix: str) -> list[tuple[str, str]]:
    ops = []
    for route in routes:
        if isinstance(route, Route):
            ops += [(prefix + route.path, m) for m in sorted(route.methods or ()) if m not in ("HEAD", "OPTIONS")]
        elif hasattr(route, "original_router"):  # FastAPI keeps an included router as one entry
            ctx = getattr(route, "include_context", None)
            ops += _walk(route.original_router.routes, prefix + str(getattr(ctx, "prefix", "") or ""))
    return ops


def _enums(spec: dict[str, Any], path: str, method: str) -> dict[str, list[str]]:
    """Allowed values of enum path parameters (views, decisions), so requests also get past the routing."""
    params = spec.get("paths", {}).get(path, {}).get(method.lower(), {}).get("parameters", [])
    return {p["name"]: p["schema"]["enum"] for p in params if "enum" in p.get("schema", {})}


def _fields(spec: dict[str, Any], path: str, method: str) -> list[str]:
    """Property names of the operation's JSON body, from the live OpenAPI."""
    op = spec.get("paths", {}).get(path, {}).get(method.lower(), {})
    schema = op.get("requestBody", {}).get("content", {}).get("application/json", {}).get("schema", {})
    ref = schema.get("$ref", "")
    if ref:
        schema = spec["components"]["schemas"][ref.rsplit("/", 1)[-1]]
    return [*sorted(schema.get("properties", {})), "n_predict", "id_slot", "lora", "junk"]


@st.composite
def _request(draw: Any, path: str, method: str, fields: list[str], enums: dict[str, list[str]],
             auth: str | None) -> dict[str, Any]:
    url = path
    for name in re.findall(r"{(\w+)}", path):
        known = st.sampled_from(enums[name]) if name in enums else st.sampled_from(["run-1", "c1", "agents"])
        value = draw(st.one_of(known, known, known, st.text(min_size=1, max_size=12)))
        url = url.replace("{" + name + "}", quote(value, safe=""))
    headers = {"X-Session-Id": draw(st.sampled_from(["", "sess-1", "anna.smith@gmail.com", "x" * 300])),
               "X-Priority": draw(st.sampled_from(["", "1", "-5", "urgent", "99999999999999999999"])),
               "X-Tenant": draw(st.sampled_from(["", "acme", "t" * 200]))}
    headers = {k: v for k, v in headers.items() if v}
    if auth is not None:
        headers["Authorization"] = draw(st.sampled_from([f"Bearer {auth}"] * 8 + ["", "Bearer nope"]))
    req: dict[str, Any] = {"method": method, "url": url, "headers": {k: v for k, v in headers.items() if v}}
    if method in ("GET", "DELETE"):
        req["params"] = draw(st.dictionaries(st.sampled_from(["limit", "model", "q"]), st.text(max_size=6),
                                             max_size=2))
        return req
    kind = draw(st.sampled_from(["mutated"] * 6 + ["valid", "json", "bytes"]))
    if kind in ("mutated", "valid"):
        body = dict(VALID.get(path, {}))
        if kind == "mutated":
            body[draw(st.sampled_from(fields))] = draw(hostile)
        if path == "/v1/chat/completions" and draw(st.booleans()):
            body["messages"] = [{"role": "user", "content": "hi", draw(st.sampled_from(MESSAGE_FIELDS)): draw(hostile)}]
        content = json.dumps(body, allow_nan=True).encode()
    elif kind == "json":
        content = json.dumps(draw(json_values), allow_nan=True).encode()
    else:
        content = draw(st.binary(max_size=40))
    ctype = draw(st.sampled_from(["application/json"] * 5 + ["text/plain", "application/x-www-form-urlencoded",
                                                              ""]))
    if ctype:
        req["headers"]["Content-Type"] = ctype
    req["content"] = content
    return req


def _problems(req: dict[str, Any], r: httpx.Response, home: str) -> list[str]:
    where = f"{req['method']} {req['url']} {req.get('content', b'')[:120]!r} -> {r.status_code}"
    out = []
    if r.status_code >= 500:
        out.append(f"server error: {where} {r.text[:200]}")
    if home in r.text:
        out.append(f"data directory shown: {where}")
    if r.status_code >= 400 and r.headers.get("content-type", "").startswith("application/json"):
        err = r.json().get("error") if isinstance(r.json(), dict) else None
        if not isinstance(err, dict) or set(err) != {"message", "type", "code", "param"} or not err["code"]:
            out.append(f"error shape: {where} {r.text[:200]}")
    elif r.status_code >= 400:
        out.append(f"error not JSON: {where} {r.headers.get('content-type')}")
    if r.status_code == 200 and r.headers.get("content-type", "").startswith("text/event-stream") \
            and not r.text.endswith("data: [DONE]\n\n"):
        out.append(f"stream without [DONE]: {where}")
    return out


def _grid(path: str, fields: list[str], auth: str | None) -> Iterator[dict[str, Any]]:
    """Each GRID_VALUES value in each top-level field (and, for chat, each message field) of a valid body."""
    url = path.replace("{run_id}", "run-1").replace("{call_id}", "c1").replace("{decision}", "approve")
    headers = {"Content-Type": "application/json"} | ({"Authorization": f"Bearer {auth}"} if auth else {})
    message_fields = MESSAGE_FIELDS[2:] if path == "/v1/chat/completions" else []
    for value in GRID_VALUES:
        for field in fields + [f"messages.0.{f}" for f in message_fields]:
            body = json.loads(json.dumps(VALID[path]))
            if field.startswith("messages.0."):
                body["messages"][0][field.rsplit(".", 1)[1]] = value
            else:
                body[field] = value
            yield {"method": "POST", "url": url, "headers": headers, "content": json.dumps(body).encode()}


def fuzz(gw: GatewayHandle, auth: str | None) -> list[str]:
    """Every route: the grid of known-bad values, then EXAMPLES random requests; returns the problems found."""
    spec = gw.app.openapi()
    home = str(load_settings().home)
    problems: list[str] = []
    with httpx.Client(base_url=gw.url, timeout=120) as client:
        for path, method in _operations(gw.app):
            if path in VALID:
                for req in _grid(path, _fields(spec, path, method), auth):
                    problems.extend(_problems(req, client.request(**req), home))
            n = BODY_EXAMPLES if path in VALID else EXAMPLES

            @settings(max_examples=n, derandomize=True, database=None, deadline=None,
                      suppress_health_check=list(HealthCheck))
            @given(req=_request(path, method, _fields(spec, path, method), _enums(spec, path, method), auth))
            def one(req: dict[str, Any]) -> None:
                problems.extend(_problems(req, client.request(**req), home))

            one()
    return problems


def test_fuzz_serve_has_no_server_errors(serve_gw: GatewayHandle) -> None:
    assert fuzz(serve_gw, None) == []


def test_fuzz_up_with_api_keys_has_no_server_errors(up_gw: GatewayHandle) -> None:
    assert fuzz(up_gw, KEY) == []


def test_every_route_is_fuzzed(up_gw: GatewayHandle) -> None:
    fuzzed = {p for p, _ in _operations(up_gw.app)}
    assert set(up_gw.app.openapi()["paths"]) <= fuzzed


def test_error_shape_is_built_in_one_place() -> None:
    src = Path(__file__).parents[2] / "src" / "blacksoil"
    spelled = [str(p) for p in src.rglob("*.py") if p.name != "errors.py"
               and re.search(r"""["']error["']\s*:\s*\{""", p.read_text())]
    assert spelled == []
