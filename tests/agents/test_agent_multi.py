"""Multi-agent runs: handoff (another agent continues the conversation) and supervisor/worker sub-runs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from agent_helpers import TEST_CEDAR, team


def _agent(name: str, prompt: str, **over: Any) -> dict[str, Any]:
    return {"name": name, "roles": ["clerk"], "tools": ["agent_test_tools"], "policies": [TEST_CEDAR],
            "system_prompt": prompt, **over}  # fmt: skip


def test_handoff_passes_the_conversation_to_another_agent(make_runtime: Any, ledger: Path) -> None:
    the_team = team(
        _agent("triage", "You are TRIAGE.", handoffs=["billing"], tools=[]),
        _agent("billing", "You are BILLING."),
    )
    script = {
        "TRIAGE": [{"calls": [["handoff_to_billing", {"reason": "a payment"}]]}],
        # the script indexes by assistant messages in the conversation; triage's one comes first
        "BILLING": [
            {"content": "never used"},
            {"calls": [["record_entry", {"text": "invoice"}]]},
            {"content": "billed"},
        ],
    }
    rt, model = make_runtime(script, the_team)
    r = rt.run("bill the customer")
    assert (r.status, r.answer) == ("completed", "billed")
    assert ledger.read_text() == "invoice\n"
    assert rt.store.get_run(r.run_id).agent == "billing"
    first, after = model.requests[0], model.requests[1]
    assert {t["function"]["name"] for t in first["tools"]} == {"handoff_to_billing"}
    assert after["messages"][0]["content"] == "You are BILLING."
    assert any(m["role"] == "tool" and m["content"] == "handed off to billing" for m in after["messages"])


def test_supervisor_delegates_to_workers(make_runtime: Any, ledger: Path) -> None:
    the_team = team(
        _agent("boss", "You are BOSS.", workers=["pricer", "writer"], tools=[]),
        _agent("pricer", "You are PRICER."),
        _agent("writer", "You are WRITER."),
    )
    script = {
        "BOSS": [
            {"calls": [["ask_pricer", {"task": "price of a bolt?"}]]},
            {"calls": [["ask_writer", {"task": "record: bolt costs 3"}]]},
            {"content": "bolt costs 3, recorded"},
        ],
        "PRICER": [{"calls": [["lookup_price", {"item": "bolt"}]]}, {"content": "3 EUR"}],
        "WRITER": [{"calls": [["record_entry", {"text": "bolt=3"}]]}, {"content": "recorded"}],
    }
    rt, _ = make_runtime(script, the_team)
    r = rt.run("price and record a bolt")
    assert (r.status, r.answer) == ("completed", "bolt costs 3, recorded")
    results = [m["content"] for m in rt.store.messages(r.run_id) if m["role"] == "tool"]
    assert results == ["3 EUR", "recorded"]
    children = rt.store.children(r.run_id)
    assert children == [f"{r.run_id}.s1c0", f"{r.run_id}.s2c0"]
    assert rt.store.get_run(children[0]).agent == "pricer"
    assert ledger.read_text() == "bolt=3\n"


def test_worker_approval_pauses_the_supervisor(make_runtime: Any, ledger: Path) -> None:
    the_team = team(
        _agent("boss", "You are BOSS.", workers=["payer"], tools=[]),
        _agent("payer", "You are PAYER."),
    )
    script = {
        "BOSS": [{"calls": [["ask_payer", {"task": "pay 500 to acme"}]]}, {"content": "paid via worker"}],
        "PAYER": [{"calls": [["transfer", {"amount": 500, "to": "acme"}]]}, {"content": "transferred"}],
    }
    rt, _ = make_runtime(script, the_team)
    r = rt.run("pay acme")
    assert (r.status, r.reason) == ("paused", "awaiting_approval")
    (pending,) = r.pending
    assert pending.run_id == f"{r.run_id}.s1c0" and pending.name == "transfer"
    rt.decide(pending.run_id, pending.call_id, approve=True, by="alice")
    assert rt.root(pending.run_id) == r.run_id
    r2 = rt.resume(r.run_id)
    assert (r2.status, r2.answer) == ("completed", "paid via worker")
    assert ledger.read_text().count("transfer") == 1
