"""The agent runs API end to end, through HTTP only, against a real `blacksoil up` process that the test SIGKILLs.

start → events → crash mid-tool → restart → resume → approval → completion, with no repeated side effect and no
missed event; a second tenant's key sees none of it. The agent's model is scripted (as in test_agent_durable).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from agent_api_helpers import KEY_A, KEY_B, Gateway, sse
from agent_scripted import ScriptedModel, serve

SPEC = {"name": "clerk", "roles": ["clerk"], "tools": ["agent_test_tools"], "policies": ["test.cedar"]}
SCRIPT: list[dict[str, Any]] = [
    {"calls": [["record_entry", {"text": "first"}]]},
    {"calls": [["slow_entry", {"text": "second", "seconds": 60}]]},
    {"calls": [["transfer", {"amount": 500, "to": "acme-supplier"}]]},
    {"content": "all done"},
]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """The scripted model, the gateway process (tenants acme and globex) and the ledger the tools write."""
    home = tmp_path_factory.mktemp("agent-api-home")
    ledger = home / "ledger.txt"
    model = ScriptedModel(SCRIPT)
    with serve(model) as url:
        gw = Gateway(home, url, ledger)
        gw.start()
        try:
            yield {"gw": gw, "ledger": ledger, "model": model}
        finally:
            gw.stop()


@pytest.fixture(scope="module")
def story(world: dict[str, Any]) -> dict[str, Any]:
    """The whole crash-and-resume run, driven once; the tests below check one fact each."""
    gw: Gateway = world["gw"]
    out: dict[str, Any] = {}
    with gw.client(KEY_A) as a:
        out["register"] = a.post("/v1/agents", content=yaml.safe_dump(SPEC),
                                 headers={"Content-Type": "application/yaml"})  # fmt: skip
        first = a.post("/v1/agents/clerk/runs", json={"task": "do the ledger work"},
                       headers={"Idempotency-Key": "order-1"})  # fmt: skip
        again = a.post("/v1/agents/clerk/runs", json={"task": "do the ledger work"},
                       headers={"Idempotency-Key": "order-1"})  # fmt: skip
        run_id = first.json()["id"]
        out.update(first=first, again=again, run_id=run_id)
        base = f"/v1/agents/clerk/runs/{run_id}"
        slow = Path(str(world["ledger"]) + ".slow")
        before = list(sse(a, base + "/events", until=lambda e: e["kind"] == "tool_call" and e["tool"] == "slow_entry"
                          and e["status"] == "started"))  # fmt: skip
        out["slow_marker"] = slow.exists()
    gw.kill()
    gw.start()
    with gw.client(KEY_A) as a:
        out["after_restart"] = a.get(base).json()
        out["resume"] = a.post(base + "/resume")
        after = list(sse(a, base + "/events", before[-1]["sse_id"], until=lambda e: e["kind"] == "approval_request"))
        call_id = after[-1]["call_id"]
        with gw.client(KEY_B) as b:
            out["b_run"] = b.get(base)
            out["b_events"] = b.get(base + "/events", params={"follow": "false"})
            out["b_approve"] = b.post(f"{base}/approvals/{call_id}", json={"decision": "approve", "by": "mallory"})
            out["b_specs"] = b.get("/v1/agents").json()
        out["self_approve"] = a.post(f"{base}/approvals/{call_id}", json={"decision": "approve", "by": "clerk"})
        out["approve"] = a.post(f"{base}/approvals/{call_id}", json={"decision": "approve", "by": "alice"})
        rest = list(sse(a, base + "/events", after[-1]["sse_id"]))
        out["final"] = a.get(base).json()
        out["streamed"] = before + after + rest
        out["all"] = list(sse(a, base + "/events", 0))
    out["ledger"] = world["ledger"].read_text().splitlines()
    return out


def test_spec_registers_from_yaml(story: dict[str, Any]) -> None:
    assert story["register"].json()["name"] == "clerk"


def test_run_starts_with_201(story: dict[str, Any]) -> None:
    assert story["first"].status_code == 201


def test_idempotency_key_answers_the_same_run(story: dict[str, Any]) -> None:
    assert story["again"].json()["id"] == story["run_id"]


def test_the_kill_came_mid_tool(story: dict[str, Any]) -> None:
    assert (story["slow_marker"], story["after_restart"]["status"]) == (True, "running")


def test_resume_after_the_crash_is_accepted(story: dict[str, Any]) -> None:
    assert story["resume"].status_code == 200


def test_run_completes_after_approval(story: dict[str, Any]) -> None:
    f = story["final"]
    assert (f["status"], f["reason"], f["answer"]) == ("completed", "answer", "all done")


def test_no_side_effect_repeated(story: dict[str, Any]) -> None:
    # slow_entry was interrupted by the kill: state-changing, not idempotent, so it was not rerun
    assert story["ledger"] == ["first", "second", json.dumps({"transfer": 500, "to": "acme-supplier"})]


def test_reconnecting_client_missed_no_event(story: dict[str, Any]) -> None:
    assert [e["sse_id"] for e in story["streamed"]] == [e["sse_id"] for e in story["all"]]


def test_stream_shows_the_interrupted_call(story: dict[str, Any]) -> None:
    ends = [e for e in story["all"] if e["kind"] == "tool_call" and e["tool"] == "slow_entry"]
    assert "not retried" in (ends[-1]["result"] or "")


def test_stream_ends_with_the_result(story: dict[str, Any]) -> None:
    last = story["all"][-1]
    assert (last["kind"], last["status"], last["reason"]) == ("result", "completed", "answer")


def test_stream_holds_every_step_kind(story: dict[str, Any]) -> None:
    kinds = {e["kind"] for e in story["all"]}
    assert kinds == {"status", "message", "model_call", "tool_call", "approval_request", "result"}


def test_approval_verdict_is_in_the_stream(story: dict[str, Any]) -> None:
    transfer = [e for e in story["all"] if e["kind"] == "tool_call" and e["tool"] == "transfer"]
    assert (transfer[-1]["verdict"], transfer[-1]["status"]) == ("allow", "completed")


def test_agent_cannot_approve_its_own_call(story: dict[str, Any]) -> None:
    assert story["self_approve"].status_code in (400, 401, 403)


def test_human_approval_resumes(story: dict[str, Any]) -> None:
    assert story["approve"].json()["resuming"] is True


def test_other_tenant_cannot_see_the_run(story: dict[str, Any]) -> None:
    assert story["b_run"].status_code == 404


def test_other_tenant_cannot_read_the_events(story: dict[str, Any]) -> None:
    assert story["b_events"].status_code == 404


def test_other_tenant_cannot_approve(story: dict[str, Any]) -> None:
    assert story["b_approve"].status_code == 404


def test_other_tenant_sees_no_spec(story: dict[str, Any]) -> None:
    assert story["b_specs"]["data"] == []


def test_404_uses_the_one_error_shape(story: dict[str, Any]) -> None:
    assert set(story["b_run"].json()["error"]) == {"message", "type", "code", "param"}
