"""The agent loop against a scripted model: answers, tool results, budgets, loop detection, policy, approvals.

The model is scripted (deterministic control flow); the policy engine, audit, approvals, store and tools are real.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from agent_helpers import ListSink, clerk, team

from blacksoil.agents.loop import REASONS


def _tool_messages(rt: Any, run_id: str) -> list[dict[str, Any]]:
    return [m for m in rt.store.messages(run_id) if m["role"] == "tool"]


def test_tools_then_answer(make_runtime: Any, ledger: Path) -> None:
    sink = ListSink()
    rt, model = make_runtime(
        [{"calls": [["lookup_price", {"item": "bolt"}], ["record_entry", {"text": "bolt x3"}]]}, {"content": "done"}],
        sink=sink,
    )
    r = rt.run("price a bolt and record it")
    assert (r.status, r.reason, r.answer, r.steps) == ("completed", "answer", "done", 2)
    assert r.tokens == 30
    results = _tool_messages(rt, r.run_id)
    assert json.loads(results[0]["content"]) == {"item": "bolt", "price": 3, "currency": "EUR"}
    assert ledger.read_text() == "bolt x3\n"
    # the second request carried the tool results back to the model, with the system prompt first
    second = model.requests[1]["messages"]
    assert second[0]["role"] == "system" and [m["role"] for m in second[-2:]] == ["tool", "tool"]
    # one ExperienceEvent(kind="tool_step") per tool step
    assert [(e.kind, e.tool_name, e.policy_verdict) for e in sink.events] == [
        ("tool_step", "lookup_price", "allow"), ("tool_step", "record_entry", "allow")]  # fmt: skip
    assert sink.events[1].session_id == r.run_id and sink.events[1].metadata["agent"] == "clerk"


def test_max_steps(make_runtime: Any, ledger: Path) -> None:
    script = [{"calls": [["lookup_price", {"item": f"i{i}"}]]} for i in range(10)]
    rt, _ = make_runtime(script, team(clerk(limits={"max_steps": 3})))
    r = rt.run("loop")
    assert (r.status, r.reason, r.steps) == ("stopped", "max_steps", 3)


def test_max_tokens(make_runtime: Any, ledger: Path) -> None:
    usage = {"prompt_tokens": 400, "completion_tokens": 100}
    script = [{"calls": [["lookup_price", {"item": f"i{i}"}]], "usage": usage} for i in range(10)]
    rt, _ = make_runtime(script, team(clerk(limits={"max_tokens": 1200})))
    r = rt.run("spend")
    assert (r.status, r.reason, r.tokens) == ("stopped", "max_tokens", 1500)


def test_max_wall_time(make_runtime: Any, ledger: Path) -> None:
    script = [{"calls": [["slow_entry", {"text": "x", "seconds": 0.6}]]}, {"calls": [["lookup_price", {"item": "y"}]]}]
    rt, _ = make_runtime(script, team(clerk(limits={"max_wall_s": 0.5})))
    r = rt.run("slow")
    assert (r.status, r.reason, r.steps) == ("stopped", "max_wall_time", 1)
    assert r.wall_s >= 0.5


def test_loop_detection_stops_before_the_repeat_runs(make_runtime: Any, ledger: Path) -> None:
    rt, _ = make_runtime([{"calls": [["record_entry", {"text": "same"}]]}], loop_repeat_limit=3)
    r = rt.run("repeat")
    assert (r.status, r.reason) == ("stopped", "loop_detected")
    assert ledger.read_text() == "same\nsame\n"  # the third identical call was not executed
    assert "loop detected" in _tool_messages(rt, r.run_id)[-1]["content"]


def test_every_run_has_a_known_reason(make_runtime: Any, ledger: Path) -> None:
    rt, _ = make_runtime([{"content": "hi"}])
    assert rt.run("hello").reason in REASONS


def test_bad_calls_are_reported_to_the_model(make_runtime: Any, ledger: Path) -> None:
    script = [
        {"calls": [["no_such_tool", {}], ["lookup_price", {"item": 5, "extra": 1}], ["broken", {"x": 1}]]},
        {"content": "ok"},
    ]
    rt, _ = make_runtime(script)
    r = rt.run("bad calls")
    assert r.status == "completed"
    unknown, invalid, bug = (m["content"] for m in _tool_messages(rt, r.run_id))
    assert "unknown tool 'no_such_tool'" in unknown and "lookup_price" in unknown
    assert "unknown argument" in invalid and "extra" in invalid
    assert "ZeroDivisionError" in bug


def test_policy_denies_and_hides_forbidden_tools(make_runtime: Any, ledger: Path) -> None:
    ledger.write_text("keep\n")
    rt, model = make_runtime([{"calls": [["wipe_ledger", {}]]}, {"content": "ok"}])
    r = rt.run("wipe")
    offered = {t["function"]["name"] for t in model.requests[0]["tools"]}
    assert "wipe_ledger" not in offered and "record_entry" in offered
    assert ledger.read_text() == "keep\n"
    assert "test-no-wipe" in _tool_messages(rt, r.run_id)[0]["content"]
    entries = rt.guard.security.audit.query(run_id=r.run_id)
    assert [(e.kind, e.verdict, e.tool) for e in entries] == [("decision", "deny", "wipe_ledger")]


def test_unknown_agent_role_gets_nothing_state_changing(make_runtime: Any, ledger: Path) -> None:
    rt, model = make_runtime([{"calls": [["record_entry", {"text": "x"}]]}, {"content": "ok"}], team(clerk(roles=[])))
    r = rt.run("try")
    offered = {t["function"]["name"] for t in model.requests[0]["tools"]}
    assert offered == {"lookup_price", "broken", "probe_host"}  # deny by default: only read-only tools are open
    assert not ledger.exists()
    assert "no policy permits" in _tool_messages(rt, r.run_id)[0]["content"]


def test_approval_pauses_then_approve_runs_the_call(make_runtime: Any, ledger: Path) -> None:
    script = [{"calls": [["transfer", {"amount": 500, "to": "acme"}], ["record_entry", {"text": "noted"}]]},
              {"content": "paid"}]  # fmt: skip
    rt, _ = make_runtime(script)
    r = rt.run("pay acme 500")
    assert (r.status, r.reason) == ("paused", "awaiting_approval")
    assert [(p.call_id, p.name) for p in r.pending] == [("s1c0", "transfer")]
    assert "transfers above 100" in r.pending[0].reasons[0]
    assert ledger.read_text() == "noted\n"  # the other call of the step went ahead
    assert rt.resume(r.run_id).status == "paused"  # nothing decided yet: still paused
    rt.decide(r.run_id, "s1c0", approve=True, by="alice")
    r2 = rt.resume(r.run_id)
    assert (r2.status, r2.answer) == ("completed", "paid")
    assert json.loads(ledger.read_text().splitlines()[1]) == {"transfer": 500, "to": "acme"}
    kinds = [(e.kind, e.verdict) for e in rt.guard.security.audit.query(run_id=r.run_id) if e.tool == "transfer"]
    assert ("approval", "approved") in kinds and ("execution", "ok") in kinds


def test_denied_call_never_runs_and_the_model_is_told(make_runtime: Any, ledger: Path) -> None:
    rt, _ = make_runtime([{"calls": [["transfer", {"amount": 900, "to": "x"}]]}, {"content": "gave up"}])
    r = rt.run("pay")
    rt.decide(r.run_id, "s1c0", approve=False, by="bob", note="not budgeted")
    r2 = rt.resume(r.run_id)
    assert (r2.status, r2.answer) == ("completed", "gave up")
    assert not ledger.exists()
    assert "not budgeted" in _tool_messages(rt, r.run_id)[0]["content"]


def test_small_transfer_needs_no_approval_and_cannot_approve_itself(make_runtime: Any, ledger: Path) -> None:
    import pytest

    from blacksoil.errors import AuthError, UserError

    calls = [["transfer", {"amount": 50, "to": "x"}], ["transfer", {"amount": 101, "to": "y"}]]
    rt, _ = make_runtime([{"calls": calls}, {"content": "ok"}])
    r = rt.run("pay")
    assert [p.call_id for p in r.pending] == ["s1c1"]
    with pytest.raises(AuthError):
        rt.decide(r.run_id, "s1c1", approve=True, by="clerk")  # the agent may not approve its own call
    with pytest.raises(UserError, match="only calls awaiting approval"):
        rt.decide(r.run_id, "s1c0", approve=True, by="alice")


def test_rule_of_two_requires_approval(make_runtime: Any, ledger: Path) -> None:
    flags = {"lookup_price": {"sensitive": True, "untrusted_output": True}}
    script = [{"calls": [["lookup_price", {"item": "bolt"}]]}, {"calls": [["record_entry", {"text": "x"}]]},
              {"content": "ok"}]  # fmt: skip
    rt, _ = make_runtime(script, team(clerk(tool_flags=flags)))
    r = rt.run("read then write")
    assert r.status == "paused" and "rule of two" in r.pending[0].reasons[0]
    assert not ledger.exists()


def test_truncated_reply_is_retried_not_taken_as_an_answer(make_runtime: Any, ledger: Path) -> None:
    rt, model = make_runtime([{"content": '{"name": "lookup_pr'}, {"content": "fine"}])
    model.script["*"][0]["finish"] = "length"
    r = rt.run("x")
    assert (r.status, r.answer, r.steps) == ("completed", "fine", 2)
    assert "cut off" in rt.store.messages(r.run_id)[2]["content"]


def test_required_tool_choice_ends_with_final_answer(make_runtime: Any, ledger: Path) -> None:
    script = [{"content": "chatting"}, {"calls": [["final_answer", {"answer": "42"}]]}]
    rt, model = make_runtime(script, team(clerk(tool_choice="required")))
    r = rt.run("answer via the tool")
    assert (r.status, r.answer, r.steps) == ("completed", "42", 2)
    assert model.requests[0]["tool_choice"] == "required"


def test_stop_at_tools_and_include_tools(make_runtime: Any, ledger: Path) -> None:
    spec = clerk(include_tools=["record_entry", "lookup_price"], stop_at_tools=["record_entry"])
    script = [{"calls": [["lookup_price", {"item": "nut"}]]}, {"calls": [["record_entry", {"text": "nut=7"}]]}]
    rt, model = make_runtime(script, team(spec))
    r = rt.run("price a nut and record it")
    assert [t["function"]["name"] for t in model.requests[0]["tools"]] == ["record_entry", "lookup_price"]
    assert (r.status, r.answer, r.steps, len(model.requests)) == ("completed", "recorded nut=7", 2, 2)
