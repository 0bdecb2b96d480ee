"""Issue 22 regressions on the platform as `blacksoil up` runs it with API keys (feedback API, console, store)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from sqlalchemy import select

from blacksoil.agents.launcher import RuntimeSetup
from blacksoil.agents.store import RunRecord, RunStore
from blacksoil.config import load_settings
from blacksoil.errors import public_message
from blacksoil.experience.models import ModelCall, Reward
from blacksoil.experience.models import Session as SessionRow
from blacksoil.serving.launch import GatewayHandle

from .conftest import KEY

AUTH = {"Authorization": f"Bearer {KEY}"}
EMAIL = "anna.smith@gmail.com"


def _column(gw: GatewayHandle, column: Any) -> list[Any]:
    store = gw.sink.store  # type: ignore[union-attr]
    with store.session() as s:
        return list(s.scalars(select(column)))


# -- finding 4: /v1/feedback errors carry code and param; no data directory in messages --

@pytest.mark.parametrize(("body", "status", "param"), [
    ({"value": 1}, 400, None),
    ({"session_id": "nope", "value": 1}, 404, None),
    ({"call_id": "nope", "value": 1}, 404, None),
    ({"session_id": "s", "value": 5}, 400, "value"),
    ({"session_id": "s", "value": "high"}, 400, "value"),
    ({"session_id": "s", "value": 1, "rating": 3}, 400, "rating"),
])
def test_feedback_errors_have_the_one_shape(up_gw: GatewayHandle, body: dict[str, Any], status: int,
                                            param: str | None) -> None:
    r = httpx.post(up_gw.url + "/v1/feedback", json=body, headers=AUTH, timeout=30)
    err = r.json()["error"]
    assert (r.status_code, set(err), bool(err["code"]), err["param"]) == (
        status, {"message", "type", "code", "param"}, True, param)


def test_feedback_with_text_plain_is_415(up_gw: GatewayHandle) -> None:
    r = httpx.post(up_gw.url + "/v1/feedback", content=b'{"value": 1}', timeout=30,
                   headers=AUTH | {"Content-Type": "text/plain"})
    assert (r.status_code, r.json()["error"]["code"]) == (415, "unsupported_media_type")


def test_error_messages_hide_the_data_directory() -> None:
    home = load_settings().home
    assert str(home) not in public_message(f"run 'x' not found in {home / 'agents.db'}", str(home))


# -- finding 5: PII in ids and keys never stored raw --

def test_pii_session_header_is_not_stored_raw(up_gw: GatewayHandle) -> None:
    r = httpx.post(up_gw.url + "/v1/chat/completions", timeout=60, headers=AUTH | {"X-Session-Id": EMAIL},
                   json={"messages": [{"role": "user", "content": "hi"}], "max_tokens": 2})
    assert r.status_code == 200 and EMAIL not in _column(up_gw, ModelCall.session_id)


def test_pii_user_field_is_not_stored_as_a_session(up_gw: GatewayHandle) -> None:
    r = httpx.post(up_gw.url + "/v1/chat/completions", timeout=60, headers=AUTH,
                   json={"messages": [{"role": "user", "content": "hi"}], "max_tokens": 2, "user": "+1 415 555 0134"})
    assert r.status_code == 200 and "+1 415 555 0134" not in _column(up_gw, SessionRow.id)


def test_feedback_by_the_raw_pii_session_id_lands(up_gw: GatewayHandle) -> None:
    httpx.post(up_gw.url + "/v1/chat/completions", timeout=60, headers=AUTH | {"X-Session-Id": EMAIL},
               json={"messages": [{"role": "user", "content": "hi"}], "max_tokens": 2})
    r = httpx.post(up_gw.url + "/v1/feedback", json={"session_id": EMAIL, "value": 1.0}, headers=AUTH, timeout=30)
    assert r.json()["recorded"] is True


def test_idempotency_key_is_not_stored_raw(up_gw: GatewayHandle) -> None:
    httpx.post(up_gw.url + "/v1/chat/completions", timeout=60, headers=AUTH | {"X-Session-Id": "plain-s"},
               json={"messages": [{"role": "user", "content": "hi"}], "max_tokens": 2})
    httpx.post(up_gw.url + "/v1/feedback", headers=AUTH, timeout=30,
               json={"session_id": "plain-s", "value": 1.0, "idempotency_key": "bob@example.com"})
    assert not any("bob@example.com" in k for k in _column(up_gw, Reward.dedup_key))


# -- finding 7: another tenant's run and a missing run get the same answer --

def test_other_tenants_run_and_missing_run_answer_alike(up_gw: GatewayHandle) -> None:
    s = load_settings()
    RunStore(RuntimeSetup.from_settings(s).store_path).create_run(
        RunRecord(run_id="run-of-beta", team={}, agent="a", task="t", tenant="beta"))
    answers = []
    for run_id in ("run-of-beta", "run-nowhere"):
        r = httpx.post(f"{up_gw.url}/v1/console/agents/{run_id}/calls/c1/approve", json={"by": "alice"},
                       headers=AUTH, timeout=30)
        answers.append((r.status_code, r.json()["error"]["message"].replace(run_id, "RUN")))
    assert answers[0] == answers[1]


def test_error_messages_hide_engine_addresses() -> None:
    assert "127.0.0.1" not in public_message("engine at http://127.0.0.1:41407/v1 failed with HTTP 500; retry")


def test_an_overlong_tenant_header_is_400(serve_gw: GatewayHandle) -> None:
    r = httpx.post(serve_gw.url + "/v1/chat/completions", timeout=60, headers={"X-Tenant": "t" * 300},
                   json={"messages": [{"role": "user", "content": "hi"}], "max_tokens": 2})
    assert (r.status_code, r.json()["error"]["param"]) == (400, "X-Tenant")
