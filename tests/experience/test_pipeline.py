"""End to end: PII sent through the real gateway and the real agent runtime never reaches the database raw.

The gateway runs the embedded llama.cpp engine; the agent runtime's model is the agents suite's scripted
server (only the model is scripted; tools, policies and the runtime's store are real).
"""

from __future__ import annotations

import sys
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text

from blacksoil.experience.anonymizer import Anonymizer
from blacksoil.experience.sink import StoreSink
from blacksoil.experience.store import ExperienceStore, default_url

PII = ["jonas.berg@mueller-gmbh.de", "+49 89 4412 9087", "5425 2334 3010 9903", "EMP-778812"]
AGENTS_TESTS = Path(__file__).parents[1] / "agents"


def _raw(store: ExperienceStore) -> str:
    with store.engine.connect() as c:
        return "\n".join(repr(tuple(r)) for t in store.table_names() for r in c.execute(text(f"SELECT * FROM {t}")))


def test_pii_through_the_gateway(tmp_path: Path, anonymizer: Anonymizer) -> None:
    from blacksoil.config import load_settings
    from blacksoil.experience.api import feedback_router
    from blacksoil.serving.config import ServingConfig
    from blacksoil.serving.launch import gateway

    store = ExperienceStore(default_url(tmp_path), anonymizer=anonymizer)
    sink = StoreSink(store)
    serving = ServingConfig.model_validate({"threads": 1, "slots": 1, "concurrency": 1, "ctx": 1024,
                                            "default_max_tokens": 4})
    with gateway(load_settings(), serving=serving, sink=sink) as gw:
        gw.app.include_router(feedback_router(lambda: store))
        body = {"model": gw.model, "max_tokens": 4, "messages": [
            {"role": "user", "content": f"I am {PII[3]}. Mail {PII[0]}, call {PII[1]}, bill card {PII[2]}."}]}
        r = httpx.post(gw.url + "/v1/chat/completions", json=body, timeout=120,
                       headers={"x-tenant": "plant3", "x-session-id": "sess-gw"})
        assert r.status_code == 200, r.text
        calls = store.tenant("plant3").model_calls()
        assert len(calls) == 1 and calls[0]["session_id"] == "sess-gw"
        fb = httpx.post(gw.url + "/v1/feedback", json={"session_id": "sess-gw", "value": 1, "comment": PII[0]},
                        headers={"x-tenant": "plant3"}, timeout=30)
        assert fb.status_code == 200 and fb.json()["recorded"] is True
    raw = _raw(store)
    assert "<EMAIL_ADDRESS>" in raw and "<CREDIT_CARD>" in raw
    for value in PII:
        assert value not in raw
    store.close()


def test_pii_through_the_agent_runtime(tmp_path: Path, anonymizer: Anonymizer,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(AGENTS_TESTS))
    monkeypatch.setenv("AGENT_TEST_LEDGER", str(tmp_path / "ledger.txt"))
    from agent_scripted import ScriptedModel, serve  # type: ignore[import-not-found]

    from blacksoil.agents.loop import AgentRuntime
    from blacksoil.agents.model import ModelClient
    from blacksoil.agents.spec import team_from_dict
    from blacksoil.agents.store import RunStore
    from blacksoil.config import settings

    store = ExperienceStore(default_url(tmp_path), anonymizer=anonymizer)
    team = team_from_dict({"name": "clerk", "roles": ["clerk"], "tools": ["agent_test_tools"], "tenant": "plant3",
                           "policies": [str(AGENTS_TESTS / "data" / "test.cedar")]})
    entry = f"customer {PII[0]} paid with {PII[2]}, phone {PII[1]}"
    model = ScriptedModel([{"calls": [["record_entry", {"text": entry}]]}, {"content": "done"}])
    with serve(model) as url:
        runs = RunStore(tmp_path / "runs.sqlite")
        rt = AgentRuntime(team, model=ModelClient(url, retries=0), store=runs, config=settings().agents,
                          sink=StoreSink(store))
        result = rt.run("record the payment")
        rt.close()
        runs.close()
    assert result.status == "completed"
    steps = store.tenant("plant3").tool_steps()
    assert [s["tool_name"] for s in steps] == ["record_entry"]
    raw = _raw(store)
    assert "record_entry" in raw and "<EMAIL_ADDRESS>" in raw
    for value in PII[:3]:
        assert value not in raw
    store.close()
    del sys.modules["agent_scripted"]
