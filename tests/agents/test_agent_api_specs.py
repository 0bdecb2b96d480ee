"""The agent API's edges against a real `blacksoil up` process: spec validation, what a remote spec may not ask for,
cancel, memory purge, the OpenAPI schema. The agent's model is scripted (as in test_agent_durable)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from agent_api_helpers import KEY_A, KEY_B, Gateway, sse
from agent_scripted import ScriptedModel, serve

SCRIPT: dict[str, list[dict[str, Any]]] = {
    "PAYER": [{"calls": [["transfer", {"amount": 500, "to": "x"}]]}, {"content": "paid"}],
    "MEMO": [{"calls": [["remember", {"fact": "the pump hums"}]]}, {"content": "noted"}],
    "*": [{"content": "ok"}],
}


def _spec(name: str, prompt: str = "", **over: Any) -> dict[str, Any]:
    return {"name": name, "roles": ["clerk"], "tools": ["agent_test_tools"], "policies": ["test.cedar"],
            "system_prompt": prompt or "You are a test agent.", **over}  # fmt: skip


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    home = tmp_path_factory.mktemp("agent-api-specs")
    with serve(ScriptedModel(SCRIPT)) as url:
        g = Gateway(home, url, home / "ledger.txt")
        g.start()
        try:
            yield g
        finally:
            g.stop()


@pytest.fixture
def a(gw: Gateway) -> Iterator[httpx.Client]:
    with gw.client(KEY_A) as c:
        yield c


def _wait(c: httpx.Client, path: str, status: str) -> dict[str, Any]:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        run: dict[str, Any] = c.get(path).json()
        if run["status"] == status and not run["driving"]:
            return run
        time.sleep(0.1)
    raise AssertionError(f"run {path} never became {status}")


def test_json_spec_registers(a: httpx.Client) -> None:
    assert a.post("/v1/agents", json=_spec("plain")).json()["name"] == "plain"


def test_registered_spec_is_listed(a: httpx.Client) -> None:
    a.post("/v1/agents", json=_spec("listed"))
    assert "listed" in [s["name"] for s in a.get("/v1/agents").json()["data"]]


def test_unknown_tool_set_is_refused_by_name(a: httpx.Client) -> None:
    r = a.post("/v1/agents", json=_spec("evil", tools=["os:system"]))
    assert (r.status_code, "'os:system'" in r.json()["error"]["message"]) == (400, True)


def test_mcp_servers_are_refused(a: httpx.Client) -> None:
    r = a.post("/v1/agents", json=_spec("evil", mcp_servers=[{"name": "sh", "command": ["sh"]}]))
    assert (r.status_code, r.json()["error"]["param"]) == (400, "mcp_servers")


def test_policy_paths_outside_the_operator_folder_are_refused(a: httpx.Client) -> None:
    r = a.post("/v1/agents", json=_spec("evil", policies=["../../../etc/passwd"]))
    assert (r.status_code, r.json()["error"]["param"]) == (400, "policies")


def test_a_spec_cannot_name_another_tenant(a: httpx.Client) -> None:
    r = a.post("/v1/agents", json=_spec("evil", tenant="globex"))
    assert (r.status_code, r.json()["error"]["param"]) == (400, "tenant")


def test_invalid_spec_gets_the_cli_message(a: httpx.Client) -> None:
    r = a.post("/v1/agents", json=_spec("bad", colour="red"))
    assert (r.status_code, "invalid agent spec" in r.json()["error"]["message"]) == (400, True)


def test_invalid_yaml_is_a_clear_400(a: httpx.Client) -> None:
    r = a.post("/v1/agents", content="name: [unclosed", headers={"Content-Type": "application/yaml"})
    assert (r.status_code, "not valid YAML" in r.json()["error"]["message"]) == (400, True)


def test_starting_an_unknown_spec_is_404(a: httpx.Client) -> None:
    assert a.post("/v1/agents/nobody/runs", json={"task": "x"}).status_code == 404


def test_bad_last_event_id_is_a_400(a: httpx.Client) -> None:
    a.post("/v1/agents", json=_spec("plain"))
    run = a.post("/v1/agents/plain/runs", json={"task": "hi"}).json()
    r = a.get(f"/v1/agents/plain/runs/{run['id']}/events", headers={"Last-Event-ID": "abc"})
    assert (r.status_code, r.json()["error"]["param"]) == (400, "Last-Event-ID")


def test_cancel_stops_a_paused_run(a: httpx.Client) -> None:
    a.post("/v1/agents", json=_spec("payer", "PAYER"))
    path = f"/v1/agents/payer/runs/{a.post('/v1/agents/payer/runs', json={'task': 'pay'}).json()['id']}"
    _wait(a, path, "paused")
    out = a.post(path + "/cancel").json()
    assert (out["status"], out["reason"]) == ("stopped", "cancelled")


def test_cancel_ends_the_event_stream_with_the_reason(a: httpx.Client) -> None:
    a.post("/v1/agents", json=_spec("payer", "PAYER"))
    path = f"/v1/agents/payer/runs/{a.post('/v1/agents/payer/runs', json={'task': 'pay'}).json()['id']}"
    _wait(a, path, "paused")
    a.post(path + "/cancel")
    last = list(sse(a, path + "/events"))[-1]
    assert (last["kind"], last["reason"]) == ("result", "cancelled")


def test_denied_call_never_runs_and_the_run_goes_on(a: httpx.Client, gw: Gateway) -> None:
    a.post("/v1/agents", json=_spec("payer", "PAYER"))
    path = f"/v1/agents/payer/runs/{a.post('/v1/agents/payer/runs', json={'task': 'pay'}).json()['id']}"
    call = _wait(a, path, "paused")["pending"][0]["call_id"]
    a.post(f"{path}/approvals/{call}", json={"decision": "deny", "by": "alice", "note": "not today"})
    run = _wait(a, path, "completed")
    assert (run["answer"], (gw.home / "ledger.txt").exists()) == ("paid", False)


def test_memory_purge_deletes_the_callers_facts(gw: Gateway) -> None:
    with gw.client(KEY_A) as a, gw.client(KEY_B) as b:
        a.post("/v1/agents", json=_spec("memo", "MEMO", tools=["agent_test_tools", "memory"]))
        _wait(a, f"/v1/agents/memo/runs/{a.post('/v1/agents/memo/runs', json={'task': 'x'}).json()['id']}",
              "completed")  # fmt: skip
        other = b.delete("/v1/agents/memory").json()["facts_deleted"]
        mine = a.delete("/v1/agents/memory").json()["facts_deleted"]
    assert (other, mine) == (0, 1)


def test_the_routes_are_in_the_openapi_schema(gw: Gateway) -> None:
    paths = httpx.get(gw.url + "/openapi.json").json()["paths"]
    assert {"/v1/agents", "/v1/agents/{spec}/runs", "/v1/agents/{spec}/runs/{run_id}/events",
            "/v1/agents/{spec}/runs/{run_id}/approvals/{call_id}", "/v1/agents/{spec}/runs/{run_id}/cancel",
            "/v1/agents/{spec}/runs/{run_id}/resume"} <= set(paths)  # fmt: skip
