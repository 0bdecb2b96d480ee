"""Attack tests of the append-only audit log: SQL edits refused, tampering detected, secrets redacted."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from blacksoil.errors import UserError
from blacksoil.security.audit import AuditLog, redact


def _fill(log: AuditLog) -> None:
    for i in range(3):
        log.append("decision", "allow", run_id=f"run-{i % 2}", call_id=f"c{i}", agent="a" if i else "b",
                   tenant="t", tool="read_sensors", arguments={"i": i})


def test_query_by_run_agent_tenant(audit: AuditLog) -> None:
    _fill(audit)
    assert [e.call_id for e in audit.query(run_id="run-0")] == ["c0", "c2"]
    assert [e.call_id for e in audit.query(agent="a")] == ["c1", "c2"]
    assert len(audit.query(tenant="t")) == 3 and audit.query(tenant="other") == []
    assert audit.query(run_id="run-1")[0].arguments == {"i": 1}


def test_update_and_delete_are_refused(audit: AuditLog) -> None:
    _fill(audit)
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        audit.connection.execute("UPDATE audit SET verdict = 'deny' WHERE seq = 1")
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        audit.connection.execute("DELETE FROM audit")
    assert len(audit.query()) == 3


def test_tampering_is_detected(tmp_path: Path) -> None:
    path = tmp_path / "a.sqlite"
    log = AuditLog(path)
    _fill(log)
    assert log.verify() == (True, "")
    raw = sqlite3.connect(path)
    raw.execute("DROP TRIGGER audit_no_update")
    raw.execute("UPDATE audit SET verdict = 'deny' WHERE seq = 2")
    raw.commit()
    ok, why = log.verify()
    assert not ok and "row 2" in why
    raw.execute("DROP TRIGGER audit_no_delete")
    raw.execute("UPDATE audit SET verdict = 'allow' WHERE seq = 2")
    raw.execute("DELETE FROM audit WHERE seq = 1")  # removing history breaks the chain too
    raw.commit()
    ok, why = log.verify()
    assert not ok and "row 2" in why


def test_secrets_never_reach_the_file(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    log = AuditLog(path)
    secrets = {
        "password": "hunter2-very-secret",
        "headers": {"Authorization": "Bearer abcdefghijklmnop123456"},
        "note": "use key AKIAABCDEFGHIJKLMNOP and mail ops-lead@plant.example",
        "blob": "x" * 10 + "Zm9vYmFyYmF6cXV4cXV1eHh4eXl5enp6MTIzNDU2Nzg5MA==",
        "gh": "token ghp_abcdefghijklmnopqrstuv",
    }
    log.append("decision", "allow", run_id="r", arguments=secrets, reasons=["mail ops-lead@plant.example"])
    log.connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    data = path.read_bytes()
    for needle in (b"hunter2", b"abcdefghijklmnop123456", b"AKIAABCDEFGHIJKLMNOP", b"ops-lead",
                   b"Zm9vYmFyYmF6cXV4", b"ghp_abc"):
        assert needle not in data, needle
    stored = log.query(run_id="r")[0]
    assert stored.arguments["password"] == "[REDACTED]" and "[EMAIL]@plant.example" in stored.arguments["note"]


def test_redact_keeps_harmless_values() -> None:
    assert redact({"machine_id": "M1", "rpm": 3000, "ok": True}) == {"machine_id": "M1", "rpm": 3000, "ok": True}
    assert redact("word " * 400).endswith("[2000 chars]")


def test_entries_need_a_run(audit: AuditLog) -> None:
    with pytest.raises(UserError, match="run_id"):
        audit.append("decision", "allow", run_id="")
