"""Long-term memory: `remember` / `recall` through the real agent loop, policies, anonymizer and SQLite FTS5.

Only the model is scripted (the outside world); the store, anonymizer, Cedar policies and audit are real.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from agent_helpers import TEST_CEDAR, clerk, team

from blacksoil.agents.memory import MemoryStore, memory_path

REMEMBER = {"calls": [["remember", {"fact": "The press P-7 valve sticks when it is cold."}]]}
RECALL = {"calls": [["recall", {"query": "press valve cold"}]]}


def _memory_clerk(**over: Any) -> dict[str, Any]:
    return clerk(tools=["agent_test_tools", "memory"], **over)


def _fact_results(store: Any, run_id: str) -> list[str]:
    return [c.result or "" for c in store.calls(run_id) if c.name == "recall"]


@pytest.fixture
def facts(tmp_path: Path) -> Iterator[MemoryStore]:
    s = MemoryStore(memory_path(tmp_path / "toolsets"))
    yield s
    s.close()


def test_a_later_run_recalls_what_an_earlier_run_remembered(make_runtime: Any, store: Any, ledger: Path) -> None:
    rt, _ = make_runtime([REMEMBER, {"content": "noted"}], team(_memory_clerk()))
    rt.run("remember the valve issue")
    rt2, _ = make_runtime([RECALL, {"content": "it sticks"}], team(_memory_clerk()))
    r = rt2.run("what do we know about the press valve?")
    assert "P-7 valve sticks" in _fact_results(store, r.run_id)[0]


def test_a_fact_is_anonymized_before_it_is_stored(make_runtime: Any, facts: MemoryStore, ledger: Path) -> None:
    step = {"calls": [["remember", {"fact": "Escalations go to jane.doe@example.com"}]]}
    rt, _ = make_runtime([step, {"content": "noted"}], team(_memory_clerk()))
    rt.run("remember who handles escalations")
    raw = sqlite3.connect(facts.path).execute("SELECT text FROM facts").fetchall()
    assert raw == [("Escalations go to <EMAIL_ADDRESS>",)]


def test_another_tenant_recalls_nothing(make_runtime: Any, store: Any, ledger: Path) -> None:
    rt, _ = make_runtime([REMEMBER, {"content": "noted"}], team(_memory_clerk(tenant="acme")))
    rt.run("remember the valve issue")
    rt2, _ = make_runtime([RECALL, {"content": "nothing"}], team(_memory_clerk(tenant="globex")))
    r = rt2.run("what do we know about the press valve?")
    assert _fact_results(store, r.run_id) == ['{"facts": []}']


def test_another_agent_of_the_tenant_recalls_nothing(make_runtime: Any, store: Any, ledger: Path) -> None:
    rt, _ = make_runtime([REMEMBER, {"content": "noted"}], team(_memory_clerk()))
    rt.run("remember the valve issue")
    rt2, _ = make_runtime([RECALL, {"content": "nothing"}], team(_memory_clerk(name="auditor")))
    r = rt2.run("what do we know about the press valve?")
    assert _fact_results(store, r.run_id) == ['{"facts": []}']


def test_spec_options_cannot_point_memory_at_another_tenant(make_runtime: Any, store: Any, ledger: Path) -> None:
    rt, _ = make_runtime([REMEMBER, {"content": "noted"}], team(_memory_clerk(tenant="acme")))
    rt.run("remember the valve issue")
    spy = _memory_clerk(tenant="globex", toolset_options={"memory": {"tenant": "acme"}})
    rt2, _ = make_runtime([RECALL, {"content": "nothing"}], team(spy))
    r = rt2.run("what do we know about the press valve?")
    assert _fact_results(store, r.run_id) == ['{"facts": []}']


def test_a_cedar_policy_governs_remember(make_runtime: Any, facts: MemoryStore, store: Any, ledger: Path,
                                         tmp_path: Path) -> None:  # fmt: skip
    policy = tmp_path / "no_secrets.cedar"
    policy.write_text('@id("no-remembered-passwords")\nforbid (principal, action == Action::"call_tool", '
                      'resource == Tool::"remember") when { context.arguments.fact like "*password*" };\n')
    step = {"calls": [["remember", {"fact": "the password is hunter2"}]]}
    rt, _ = make_runtime([step, {"content": "ok"}], team(_memory_clerk(policies=[TEST_CEDAR, str(policy)])))
    r = rt.run("remember the password")
    (call,) = store.calls(r.run_id)
    assert (call.status, call.verdict, facts.count("default")) == ("blocked", "deny", 0)


def test_remember_is_stored_once_per_call_key(facts: MemoryStore) -> None:
    facts.remember("acme", "clerk", "the pump hums", "run1:s1c0")
    facts.remember("acme", "clerk", "the pump hums", "run1:s1c0")  # a resumed run retries with the same key
    assert facts.count("acme") == 1


def test_purge_deletes_only_that_tenant(facts: MemoryStore) -> None:
    facts.remember("acme", "clerk", "the pump hums", "a:1")
    facts.remember("globex", "clerk", "the pump hums", "g:1")
    facts.purge("acme")
    assert (facts.count("acme"), facts.count("globex")) == (0, 1)


def test_purged_facts_leave_the_search_index(facts: MemoryStore) -> None:
    facts.remember("acme", "clerk", "the pump hums", "a:1")
    facts.purge("acme")
    (n,) = sqlite3.connect(facts.path).execute("SELECT COUNT(*) FROM facts_fts WHERE facts_fts MATCH 'pump'").fetchone()
    assert n == 0


def test_query_syntax_is_not_fts_syntax(facts: MemoryStore) -> None:
    facts.remember("acme", "clerk", "the pump hums", "a:1")
    found = facts.recall("acme", "clerk", 'pump" OR text:* NEAR(')
    assert [f["fact"] for f in found] == ["the pump hums"]


def test_an_empty_query_is_a_clear_error(facts: MemoryStore) -> None:
    from blacksoil.errors import UserError

    with pytest.raises(UserError, match="no words"):
        facts.recall("acme", "clerk", "?!")
