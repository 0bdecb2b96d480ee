"""The store on SQLite and a real PostgreSQL: idempotent writes, no raw PII on disk, rewards, export, purge."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from sqlalchemy import text

from blacksoil.contracts import ExperienceEvent
from blacksoil.errors import ConfigError, NotFoundError
from blacksoil.experience.rewards import record_check
from blacksoil.experience.sink import StoreSink
from blacksoil.experience.store import ExperienceStore

SECRETS = ["anna.berg@northwind.com", "+1 415-867-2291", "4111111111111111", "DE89370400440532013000",
           "sk-proj-Abc123Def456Ghi789Jkl012Mno345Pqr678", "EMP-204118", "10.20.30.40"]


def gateway_call(tenant: str = "acme", session: str = "s1", **kw: object) -> ExperienceEvent:
    """Shaped like the gateway's model_call events."""
    return ExperienceEvent(
        kind="model_call", tenant=tenant, session_id=session, request_id="req-1", model="smollm2-135m",
        adapter_version="v2",
        messages=[{"role": "system", "content": "You are a plant assistant."},
                  {"role": "user", "content": f"Email {SECRETS[0]} and call {SECRETS[1]}; card {SECRETS[2]}"}],
        response={"role": "assistant", "content": f"Paid to IBAN {SECRETS[3]}."},
        prompt_token_ids=[1, 2, 3], completion_token_ids=[4, 5], completion_logprobs=[-0.1, -0.2],
        timings={"ttft_s": 0.1, "e2e_s": 0.5}, usage={"prompt_tokens": 3, "completion_tokens": 2},
        metadata={"task_id": "jobshop-ft06"}, **kw,  # type: ignore[arg-type]
    )


def runtime_step(tenant: str = "acme", session: str = "s1", error: str | None = None) -> ExperienceEvent:
    """Shaped like the agent runtime's tool_step events."""
    return ExperienceEvent(kind="tool_step", tenant=tenant, session_id=session, request_id="call-7",
                           tool_name="shell", tool_arguments={"cmd": f"curl -H 'Authorization: Bearer {SECRETS[4]}'"},
                           response={"content": f"badge {SECRETS[5]} logged in from {SECRETS[6]}"},
                           policy_verdict="allow", error=error, timings={"run_s": 0.2},
                           metadata={"task_id": "jobshop-ft06"})


def raw_dump(store: ExperienceStore) -> str:
    """Every cell of every table, read straight from the database."""
    out = []
    with store.engine.connect() as c:
        for table in store.table_names():
            out += [repr(tuple(row)) for row in c.execute(text(f"SELECT * FROM {table}"))]
    return "\n".join(out)


def test_nothing_unanonymized_reaches_the_database(store: ExperienceStore) -> None:
    sink = StoreSink(store)
    sink.emit(gateway_call())
    sink.emit(runtime_step(error=f"connection to {SECRETS[6]} refused"))
    store.tenant("acme").add_reward(1.0, "feedback", session_id="s1", detail={"comment": f"ping {SECRETS[0]}"})
    dump = raw_dump(store)
    assert "plant assistant" in dump, "the dump really contains the stored rows"
    for secret in SECRETS:
        assert secret not in dump
        assert secret.replace(" ", "") not in dump
    call = store.tenant("acme").model_calls()[0]
    assert call["prompt_token_ids"] is None, "prompt token ids would decode back to the PII"
    assert call["completion_token_ids"] is None and call["adapter_version"] == "v2"


def test_writes_are_idempotent_by_event_id(store: ExperienceStore) -> None:
    ev = gateway_call()
    assert store.ingest(ev) is True
    assert store.ingest(ev) is False
    assert store.ingest_many([ev, runtime_step()]) == 1
    assert store.tenant("acme").stats() == {"sessions": 1, "model_calls": 1, "tool_steps": 1, "rewards": 0,
                                            "tasks": 0}


def test_rewards_from_every_source(store: ExperienceStore) -> None:
    store.ingest(gateway_call())
    store.ingest(runtime_step(error="exit status 1"))
    ts = store.tenant("acme")
    assert record_check(ts, "s1", 0.5, checker="makespan_within_10pct", task_id="jobshop-ft06")
    assert not record_check(ts, "s1", 0.5, checker="makespan_within_10pct"), "re-running a checker is idempotent"
    assert ts.add_reward(-1.0, "feedback", call_id="req-1", dedup_key="fb1")
    assert not ts.add_reward(-1.0, "feedback", call_id="req-1", dedup_key="fb1")
    sources = sorted((r["source"], r["scope"], r["value"]) for r in ts.rewards())
    assert sources == [("agentscore", "session", 0.5), ("feedback", "call", -1.0), ("tool_error", "step", -1.0)]
    with pytest.raises(ConfigError, match="source"):
        ts.add_reward(1.0, "vibes", session_id="s1")
    with pytest.raises(ConfigError, match="exactly one"):
        ts.add_reward(1.0, "feedback")
    with pytest.raises(NotFoundError):
        ts.add_reward(1.0, "feedback", session_id="nope")
    with pytest.raises(ConfigError, match="outside"):
        record_check(ts, "s1", 1.5, checker="c")
    traj = ts.trajectories()
    assert len(traj) == 1 and traj[0]["failed"] and traj[0]["reward"] == pytest.approx(-1.5)


def test_export_jsonl_and_parquet_then_purge(store: ExperienceStore, tmp_path: Path) -> None:
    store.ingest(gateway_call())
    store.ingest(runtime_step())
    ts = store.tenant("acme")
    ts.set_task_split("jobshop-ft06", "train")
    assert ts.task_splits() == {"jobshop-ft06": "train"}
    with pytest.raises(ConfigError, match="split"):
        ts.set_task_split("x", "holdout")
    ts.add_reward(1.0, "feedback", session_id="s1")
    assert ts.export(tmp_path / "e.jsonl", "jsonl") == 2
    rows = [json.loads(line) for line in (tmp_path / "e.jsonl").read_text().splitlines()]
    assert {r["kind"] for r in rows} == {"model_call", "tool_step"}
    assert all(r["rewards"] for r in rows)
    assert ts.export(tmp_path / "e.parquet", "parquet") == 2
    assert pq.read_table(tmp_path / "e.parquet").num_rows == 2
    with pytest.raises(ConfigError, match="format"):
        ts.export(tmp_path / "e.csv", "csv")
    deleted = ts.purge()
    assert deleted["model_calls"] == 1 and deleted["tool_steps"] == 1 and deleted["rewards"] == 1
    assert ts.stats() == {"sessions": 0, "model_calls": 0, "tool_steps": 0, "rewards": 0, "tasks": 0}


def test_schema_comes_from_alembic_and_reopening_is_safe(store: ExperienceStore, store_url: str) -> None:
    with store.engine.connect() as c:
        assert c.execute(text("SELECT version_num FROM alembic_version")).scalar() == "0002"
    store.ingest(gateway_call())
    again = ExperienceStore(store_url, anonymizer=store.anonymizer)
    assert again.tenant("acme").stats()["model_calls"] == 1
    again.close()


def test_bad_url_is_a_clear_error() -> None:
    with pytest.raises(ConfigError, match="URL"):
        ExperienceStore("notadb://x")
    with pytest.raises(ConfigError, match="kind"):
        ExperienceStore("sqlite://").write_anonymized(
            [ExperienceEvent(kind="weird", metadata={"pii_replaced": 0})])  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="not anonymized"):
        ExperienceStore("sqlite://").write_anonymized([ExperienceEvent(kind="model_call")])
