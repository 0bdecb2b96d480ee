"""Integration: the agent loop against the real blacksoil gateway and the shipped default model (no script).

The first step must call a tool (constrained decoding), so the run's control flow is deterministic even though
the 135M model's words are not.
"""

from __future__ import annotations

import json
from pathlib import Path

from agent_helpers import ListSink, clerk, team

from blacksoil.agents.loop import AgentRuntime
from blacksoil.agents.model import ModelClient
from blacksoil.agents.store import RunStore
from blacksoil.config import load_settings, settings


def test_run_through_the_gateway_with_the_default_model(tmp_path: Path, ledger: Path) -> None:
    from blacksoil.serving.launch import gateway

    spec = clerk(include_tools=["lookup_price"], stop_at_tools=["lookup_price"], tool_choice="required_first",
                 limits={"max_steps": 2})  # fmt: skip
    sink = ListSink()
    store = RunStore(tmp_path / "runs.sqlite")
    with gateway(load_settings()) as gw:
        client = ModelClient(gw.openai_base_url, model=gw.model, max_tokens=64)
        rt = AgentRuntime(team(spec), model=client, store=store, config=settings().agents, sink=sink)
        try:
            r = rt.run("What is the unit price of a bolt?")
        finally:
            rt.close()
            client.close()
    (call,) = store.calls(r.run_id)
    assert call.name == "lookup_price" and call.status == "completed" and isinstance(call.arguments["item"], str)
    assert (r.status, r.reason, r.steps) == ("completed", "answer", 1)
    assert json.loads(r.answer or "")["currency"] in ("EUR", "USD")
    assert r.tokens > 0  # usage came back from the gateway
    assert [e.tool_name for e in sink.events] == ["lookup_price"]
    store.close()
