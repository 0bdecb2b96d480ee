"""Attack tests: tenant B, knowing tenant A's ids, must not read, reward, export or purge A's data."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from blacksoil.contracts import ExperienceEvent
from blacksoil.errors import ConfigError, NotFoundError
from blacksoil.experience.api import feedback_router
from blacksoil.experience.store import ExperienceStore


def _seed(store: ExperienceStore) -> tuple[str, str]:
    call = ExperienceEvent(kind="model_call", tenant="alpha", session_id="shared-name", request_id="req-a",
                           messages=[{"role": "user", "content": "alpha's secret plan"}])
    step = ExperienceEvent(kind="tool_step", tenant="alpha", session_id="shared-name", tool_name="t",
                           response={"content": "alpha's tool output"}, error="boom")
    store.ingest_many([call, step])
    store.tenant("alpha").add_reward(1.0, "feedback", session_id="shared-name")
    store.tenant("alpha").set_task_split("task-a", "test")
    return call.event_id, step.event_id


def test_no_api_leaks_across_tenants(store: ExperienceStore, tmp_path: Path) -> None:
    call_id, step_id = _seed(store)
    # Beta has data of its own, including a session with the same name as alpha's.
    store.ingest(ExperienceEvent(kind="model_call", tenant="beta", session_id="shared-name",
                                 messages=[{"role": "user", "content": "beta's question"}]))
    beta = store.tenant("beta")
    assert all("alpha" not in repr(c) for c in beta.model_calls())
    assert beta.model_calls(session_id="shared-name")[0]["messages"][0]["content"] == "beta's question"
    assert beta.tool_steps() == [] and beta.rewards() == [] and beta.task_splits() == {}
    assert [t["n_events"] for t in beta.trajectories()] == [1]
    for event_id in (call_id, step_id, "req-a"):
        with pytest.raises(NotFoundError):
            beta.get_event(event_id)
        with pytest.raises(NotFoundError):
            beta.find_call(event_id)
        with pytest.raises(NotFoundError):
            beta.add_reward(-1.0, "feedback", call_id=event_id)
    assert beta.stats() == {"sessions": 1, "model_calls": 1, "tool_steps": 0, "rewards": 0, "tasks": 0}
    assert beta.export(tmp_path / "b.jsonl") == 1
    assert "alpha" not in (tmp_path / "b.jsonl").read_text()
    beta.purge()
    alpha = store.tenant("alpha")
    assert alpha.stats() == {"sessions": 1, "model_calls": 1, "tool_steps": 1, "rewards": 2, "tasks": 1}
    assert alpha.get_event(call_id)["messages"][0]["content"] == "alpha's secret plan"
    # Reusing another tenant's event id neither overwrites nor reveals it.
    assert store.ingest(ExperienceEvent(kind="model_call", tenant="gamma", event_id=call_id,
                                        messages=[{"role": "user", "content": "gamma"}]))
    assert alpha.get_event(call_id)["messages"][0]["content"] == "alpha's secret plan"
    with pytest.raises(ConfigError):
        store.tenant("")


def test_feedback_api_is_tenant_scoped(store: ExperienceStore) -> None:
    call_id, _ = _seed(store)
    app = FastAPI()
    app.include_router(feedback_router(lambda: store))
    client = TestClient(app)
    r = client.post("/v1/feedback", json={"call_id": call_id, "value": -1.0}, headers={"x-tenant": "beta"})
    assert r.status_code == 404 and r.json()["error"]["type"] == "not_found_error"
    r = client.post("/v1/feedback", json={"session_id": "shared-name", "value": 1.0}, headers={"x-tenant": "beta"})
    assert r.status_code == 404
    assert store.tenant("beta").rewards() == []
    r = client.post("/v1/feedback", json={"call_id": "req-a", "value": 1.0, "comment": "great, mail anna@gmail.com",
                                          "idempotency_key": "k1"}, headers={"x-tenant": "alpha"})
    assert r.status_code == 200 and r.json()["recorded"] is True
    r = client.post("/v1/feedback", json={"call_id": "req-a", "value": 1.0, "idempotency_key": "k1"},
                    headers={"x-tenant": "alpha"})
    assert r.json()["recorded"] is False
    fb = [x for x in store.tenant("alpha").rewards() if x["scope"] == "call"]
    assert len(fb) == 1 and fb[0]["event_id"] == call_id and fb[0]["detail"]["comment"] == "great, mail <EMAIL_ADDRESS>"
    assert client.post("/v1/feedback", json={"call_id": "req-a", "value": 5}, headers={"x-tenant": "alpha"}
                       ).status_code == 422
    r = client.post("/v1/feedback", json={"value": 1}, headers={"x-tenant": "alpha"})
    assert r.status_code == 400 and "exactly one" in r.json()["error"]["message"]
