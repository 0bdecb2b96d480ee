"""Append-only audit log of every security decision (allow, deny, approval, sandbox verdict), arguments redacted.

SQLite (WAL) at the path the caller passes (home / security.store_file); queryable by run, agent and tenant;
rows are hash-chained.

What this protects, and what it does not (tests in tests/security/test_audit.py):
- Protects: rows cannot be changed or deleted through SQL (triggers abort UPDATE and DELETE) —
  test_update_and_delete_are_refused.
- Protects: tampering that bypasses the triggers (dropping them, editing the file) is detected by `verify()`,
  because each row's hash covers the previous row's hash — test_tampering_is_detected.
- Protects: secrets in arguments (keys named like password/token/secret/api_key, bearer tokens, AWS keys, private
  keys, e-mail addresses, long opaque strings) never reach the log file — test_secrets_never_reach_the_file.
- Protects: the approvals table's status and decided_by are checked against the chain's decisions by `verify()`.
- Does not protect: against someone who rewrites the whole chain from the first row, or cuts off the newest rows
  (no external anchor; ship `head()` to another system to get that).
- Does not protect: secrets in shapes the patterns do not know (a password in free prose).
"""

from __future__ import annotations

import hashlib
import json
import re
import sqlite3
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from blacksoil.errors import InternalError, UserError

REDACTED = "[REDACTED]"
_SECRET_KEY = re.compile(r"pass(word|wd)?|secret|token|api[_-]?key|auth|credential|private[_-]?key|cookie|session",
                         re.I)
_SECRET_VALUE = [
    (re.compile(r"(?i)bearer\s+[a-z0-9._~+/=-]{8,}"), "Bearer " + REDACTED),
    (re.compile(r"\bAKIA[0-9A-Z]{16}\b"), REDACTED),
    (re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----[\s\S]*?(-----END [A-Z ]*PRIVATE KEY-----|$)"), REDACTED),
    (re.compile(r"\b(sk|ghp|gho|xox[abp])[-_][A-Za-z0-9_-]{10,}\b"), REDACTED),
    # The person is redacted, the domain kept: where data was sent matters when reading an incident.
    (re.compile(r"[A-Za-z0-9._%+-]+@(?=[A-Za-z0-9.-]+\.[A-Za-z]{2,})"), "[EMAIL]@"),
    (re.compile(r"\b[A-Za-z0-9+/_-]{40,}={0,2}"), REDACTED),
]
_MAX_STR = 512


def redact(value: Any, key: str = "") -> Any:
    """A copy of `value` with secrets replaced; long strings are cut (with their length kept)."""
    if key and _SECRET_KEY.search(key):
        return REDACTED
    if isinstance(value, Mapping):
        return {str(k): redact(v, str(k)) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [redact(v) for v in value]
    if isinstance(value, str):
        out = value
        for pattern, repl in _SECRET_VALUE:
            out = pattern.sub(repl, out)
        if len(out) > _MAX_STR:
            out = out[:_MAX_STR] + f"...[{len(value)} chars]"
        return out
    if value is None or isinstance(value, (bool, int, float)):
        return value
    return redact(repr(value))


@dataclass(frozen=True)
class AuditEntry:
    """One row of the audit log."""

    seq: int
    ts: float
    kind: str
    """decision | approval | sandbox | execution"""
    verdict: str
    run_id: str
    call_id: str
    agent: str
    tenant: str
    user: str
    tool: str
    arguments: dict[str, Any]
    reasons: tuple[str, ...]
    policy_ids: tuple[str, ...]
    detail: dict[str, Any]


_SCHEMA = """
CREATE TABLE IF NOT EXISTS audit (
  seq INTEGER PRIMARY KEY AUTOINCREMENT, ts REAL NOT NULL, kind TEXT NOT NULL, verdict TEXT NOT NULL,
  run_id TEXT NOT NULL, call_id TEXT NOT NULL, agent TEXT NOT NULL, tenant TEXT NOT NULL, user TEXT NOT NULL,
  tool TEXT NOT NULL, arguments TEXT NOT NULL, reasons TEXT NOT NULL, policy_ids TEXT NOT NULL, detail TEXT NOT NULL,
  prev_hash TEXT NOT NULL, hash TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS audit_run ON audit(run_id);
CREATE INDEX IF NOT EXISTS audit_agent ON audit(agent);
CREATE INDEX IF NOT EXISTS audit_tenant ON audit(tenant);
CREATE TRIGGER IF NOT EXISTS audit_no_update BEFORE UPDATE ON audit
  BEGIN SELECT RAISE(ABORT, 'audit log is append-only'); END;
CREATE TRIGGER IF NOT EXISTS audit_no_delete BEFORE DELETE ON audit
  BEGIN SELECT RAISE(ABORT, 'audit log is append-only'); END;
"""
_COLS = ("ts", "kind", "verdict", "run_id", "call_id", "agent", "tenant", "user", "tool", "arguments", "reasons",
         "policy_ids", "detail")
_GENESIS = "0" * 64


def _row_hash(prev: str, values: tuple[Any, ...]) -> str:
    return hashlib.sha256((prev + json.dumps(values, sort_keys=True, default=str)).encode()).hexdigest()


def connect(path: Path) -> sqlite3.Connection:
    """A SQLite connection in WAL mode, shared by the audit log and the approval store."""
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None, timeout=30)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    return conn


class AuditLog:
    """The append-only, hash-chained log; `append` redacts, `query` filters, `verify` checks the chain."""

    def __init__(self, path: Path | None = None, conn: sqlite3.Connection | None = None) -> None:
        if conn is None:
            if path is None:
                raise InternalError("AuditLog needs a path (home / security.store_file) or a connection")
            conn = connect(path)
        self._conn = conn
        self._lock = threading.Lock()
        self._conn.executescript(_SCHEMA)

    @property
    def connection(self) -> sqlite3.Connection:
        return self._conn

    @property
    def lock(self) -> threading.Lock:
        """Held around every use of the shared connection (the approval store takes it too)."""
        return self._lock

    def append(
        self,
        kind: str,
        verdict: str,
        *,
        run_id: str,
        call_id: str = "",
        agent: str = "",
        tenant: str = "",
        user: str | None = None,
        tool: str = "",
        arguments: Mapping[str, Any] | None = None,
        reasons: tuple[str, ...] | list[str] = (),
        policy_ids: tuple[str, ...] | list[str] = (),
        detail: Mapping[str, Any] | None = None,
    ) -> int:
        """Add one entry (arguments and detail are redacted first) and return its sequence number."""
        if not run_id:
            raise UserError("audit entries need a run_id; pass the run the decision belongs to")
        values = (
            time.time(), kind, verdict, run_id, call_id, agent, tenant, user or "", tool,
            json.dumps(redact(dict(arguments or {})), sort_keys=True),
            json.dumps([redact(r) for r in reasons]), json.dumps(list(policy_ids)),
            json.dumps(redact(dict(detail or {})), sort_keys=True),
        )
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                row = self._conn.execute("SELECT hash FROM audit ORDER BY seq DESC LIMIT 1").fetchone()
                prev = row[0] if row else _GENESIS
                cur = self._conn.execute(
                    f"INSERT INTO audit ({', '.join(_COLS)}, prev_hash, hash) VALUES ({', '.join('?' * 15)})",
                    (*values, prev, _row_hash(prev, values)),
                )
                self._conn.execute("COMMIT")
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
        seq = cur.lastrowid
        if seq is None:
            raise InternalError("SQLite returned no row id for an audit insert")
        return seq

    def query(
        self, *, run_id: str | None = None, agent: str | None = None, tenant: str | None = None,
        kind: str | None = None, limit: int = 1000,
    ) -> list[AuditEntry]:
        """Entries matching every given filter, oldest first."""
        where, args = [], []
        for col, val in (("run_id", run_id), ("agent", agent), ("tenant", tenant), ("kind", kind)):
            if val is not None:
                where.append(f"{col} = ?")
                args.append(val)
        sql = "SELECT seq, " + ", ".join(_COLS) + " FROM audit"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY seq LIMIT ?"
        with self._lock:
            rows = self._conn.execute(sql, (*args, limit)).fetchall()
        return [
            AuditEntry(seq=r[0], ts=r[1], kind=r[2], verdict=r[3], run_id=r[4], call_id=r[5], agent=r[6],
                       tenant=r[7], user=r[8], tool=r[9], arguments=json.loads(r[10]),
                       reasons=tuple(json.loads(r[11])), policy_ids=tuple(json.loads(r[12])),
                       detail=json.loads(r[13]))
            for r in rows
        ]

    def verify(self) -> tuple[bool, str]:
        """Recompute the hash chain: (True, "") or (False, which row broke it)."""
        prev = _GENESIS
        with self._lock:
            rows = self._conn.execute(f"SELECT seq, {', '.join(_COLS)}, prev_hash, hash FROM audit ORDER BY seq")
            for r in rows:
                values, stored_prev, stored = tuple(r[1:14]), r[14], r[15]
                if stored_prev != prev or _row_hash(prev, values) != stored:
                    return False, f"audit row {r[0]} does not match the hash chain (edited, inserted or removed)"
                prev = stored
            return self._verify_approvals()

    def _verify_approvals(self) -> tuple[bool, str]:
        """The approvals table (status, decided_by) must agree with the last decision the chain records."""
        conn = self._conn
        if conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'approvals'").fetchone() is None:
            return True, ""
        chained: dict[str, tuple[str, str]] = {}
        for call_id, verdict, user in conn.execute(
                "SELECT call_id, verdict, user FROM audit WHERE kind = 'approval' AND verdict IN ('approved', "
                "'denied') ORDER BY seq"):
            chained[call_id] = (verdict, user)
        for call_id, status, by in conn.execute("SELECT call_id, status, decided_by FROM approvals"):
            recorded = chained.get(call_id)
            if (status == "pending" and recorded is None) or recorded == (status, by):
                continue
            return False, (f"approval of call {call_id!r} ({status} by {by!r}) does not match the audit chain "
                           f"({recorded or 'no decision'}): the approvals table was edited")
        return True, ""

    def head(self) -> str:
        """Hash of the newest row: publish it elsewhere to anchor the chain."""
        with self._lock:
            row = self._conn.execute("SELECT hash FROM audit ORDER BY seq DESC LIMIT 1").fetchone()
        return row[0] if row else _GENESIS
