"""Durable agent sessions: every run, message and tool call persisted in SQLite (WAL).

A run killed at any point resumes from its last committed step; tool calls carry idempotency keys.
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from blacksoil.errors import NotFoundError, UserError

__all__ = ["CALL_STATUSES", "EVENT_KINDS", "RUN_STATUSES", "CallRecord", "RunEvent", "RunRecord", "RunStore"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY,
    parent_run_id TEXT,
    team TEXT NOT NULL,
    agent TEXT NOT NULL,
    task TEXT NOT NULL,
    tenant TEXT NOT NULL,
    user_id TEXT NOT NULL,
    status TEXT NOT NULL,
    reason TEXT,
    answer TEXT,
    steps INTEGER NOT NULL DEFAULT 0,
    tokens INTEGER NOT NULL DEFAULT 0,
    wall_s REAL NOT NULL DEFAULT 0,
    flags TEXT NOT NULL DEFAULT '{}',
    owner TEXT,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS messages (
    run_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    agent TEXT NOT NULL,
    message TEXT NOT NULL,
    PRIMARY KEY (run_id, seq)
);
CREATE TABLE IF NOT EXISTS tool_calls (
    run_id TEXT NOT NULL,
    call_id TEXT NOT NULL,
    idempotency_key TEXT NOT NULL UNIQUE,
    step INTEGER NOT NULL,
    agent TEXT NOT NULL,
    name TEXT NOT NULL,
    arguments TEXT NOT NULL,
    status TEXT NOT NULL,
    verdict TEXT,
    reasons TEXT NOT NULL DEFAULT '[]',
    result TEXT,
    started_at REAL,
    finished_at REAL,
    PRIMARY KEY (run_id, call_id)
);
CREATE TABLE IF NOT EXISTS events (
    event_id INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    data TEXT NOT NULL,
    ts REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS events_run ON events(run_id, event_id);
CREATE TABLE IF NOT EXISTS specs (
    tenant TEXT NOT NULL,
    name TEXT NOT NULL,
    team TEXT NOT NULL,
    updated_at REAL NOT NULL,
    PRIMARY KEY (tenant, name)
);
CREATE TABLE IF NOT EXISTS run_keys (
    tenant TEXT NOT NULL,
    key_hash TEXT NOT NULL,
    run_id TEXT NOT NULL,
    PRIMARY KEY (tenant, key_hash)
);
"""

#: Statuses of a run; `paused` waits for approvals, the rest are final.
RUN_STATUSES = ("running", "paused", "completed", "stopped", "failed")
#: Statuses of a tool call.
CALL_STATUSES = ("awaiting_approval", "approved", "denied", "started", "completed", "failed", "blocked")
#: Kinds of run events, written in the same transaction as the state they describe (so a stream misses none).
EVENT_KINDS = ("status", "message", "model_call", "tool_call", "approval_request", "result")


@dataclass
class RunRecord:
    """One run as stored."""

    run_id: str
    team: dict[str, Any]
    agent: str
    task: str
    tenant: str = "default"
    user_id: str = "local"
    status: str = "running"
    reason: str | None = None
    answer: str | None = None
    steps: int = 0
    tokens: int = 0
    wall_s: float = 0.0
    flags: dict[str, bool] = field(default_factory=dict)
    parent_run_id: str | None = None
    owner: str | None = None
    """`host:pid` of the process driving the run; a live owner keeps others from driving it at the same time."""
    created_at: float = field(default_factory=time.time)
    updated_at: float = field(default_factory=time.time)


@dataclass
class CallRecord:
    """One tool call as stored; `idempotency_key` is `<run_id>:<call_id>`."""

    run_id: str
    call_id: str
    idempotency_key: str
    step: int
    agent: str
    name: str
    arguments: dict[str, Any]
    status: str
    verdict: str | None = None
    reasons: list[str] = field(default_factory=list)
    result: str | None = None
    started_at: float | None = None
    finished_at: float | None = None


@dataclass
class RunEvent:
    """One step of a run as a client follows it; `event_id` grows over the whole store (an SSE `id`)."""

    event_id: int
    run_id: str
    kind: str
    data: dict[str, Any]
    ts: float


class RunStore:
    """SQLite store of runs; one connection per thread, WAL so readers never block the writer."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        self._conn().executescript(_SCHEMA)  # executescript commits on its own: no surrounding transaction

    def _conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, isolation_level=None, timeout=30)
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA journal_mode=WAL")
            # FULL: a committed step must survive a power cut, not just a process kill.
            conn.execute("PRAGMA synchronous=FULL")
            self._local.conn = conn
        return conn

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        c = self._conn()
        if c.in_transaction:  # nested: the outer transaction commits
            yield c
            return
        c.execute("BEGIN IMMEDIATE")
        try:
            yield c
            c.execute("COMMIT")
        except BaseException:
            c.execute("ROLLBACK")
            raise

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """Group several writes into one atomic step."""
        with self._tx():
            yield

    # runs
    def create_run(self, r: RunRecord) -> None:
        with self._tx() as c:
            c.execute(
                "INSERT INTO runs VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (r.run_id, r.parent_run_id, json.dumps(r.team), r.agent, r.task, r.tenant, r.user_id, r.status,
                 r.reason, r.answer, r.steps, r.tokens, r.wall_s, json.dumps(r.flags), r.owner, r.created_at,
                 r.updated_at),
            )  # fmt: skip
            self._event(c, r.run_id, "status", {"status": r.status, "agent": r.agent, "task": r.task})

    def get_run(self, run_id: str) -> RunRecord:
        row = self._conn().execute("SELECT * FROM runs WHERE run_id=?", (run_id,)).fetchone()
        if row is None:
            raise NotFoundError(f"run {run_id!r} not found in {self.path}; list runs with `blacksoil agent list`")
        return _run(row)

    def list_runs(self, limit: int = 50, tenant: str | None = None) -> list[RunRecord]:
        q, args = "SELECT * FROM runs", []
        if tenant is not None:
            q, args = q + " WHERE tenant=?", [tenant]
        rows = self._conn().execute(q + " ORDER BY created_at DESC LIMIT ?", [*args, limit]).fetchall()
        return [_run(r) for r in rows]

    def has_run(self, run_id: str) -> bool:
        return self._conn().execute("SELECT 1 FROM runs WHERE run_id=?", (run_id,)).fetchone() is not None

    def children(self, run_id: str) -> list[str]:
        """Ids of the worker sub-runs a supervisor run started."""
        rows = self._conn().execute("SELECT run_id FROM runs WHERE parent_run_id=? ORDER BY created_at", (run_id,))
        return [r["run_id"] for r in rows.fetchall()]

    def claim(self, run_id: str) -> None:
        """Make this process the run's driver; refuse while another live process drives it."""
        me = f"{socket.gethostname()}:{os.getpid()}"
        with self._tx() as c:
            row = c.execute("SELECT status, owner FROM runs WHERE run_id=?", (run_id,)).fetchone()
            if row is None:
                raise NotFoundError(f"run {run_id!r} not found in {self.path}; list runs with `blacksoil agent list`")
            owner = row["owner"]
            if row["status"] == "running" and owner and owner != me and _alive(owner):
                raise UserError(f"run {run_id!r} is being driven by process {owner}; wait for it or stop that process")
            c.execute("UPDATE runs SET owner=? WHERE run_id=?", (me, run_id))

    def update_run(self, run_id: str, **fields: Any) -> None:
        allowed = {"agent", "status", "reason", "answer", "steps", "tokens", "wall_s", "flags"}
        bad = set(fields) - allowed
        assert not bad, f"not updatable: {bad}"
        vals = [json.dumps(v) if k == "flags" else v for k, v in fields.items()]
        sets = ", ".join(f"{k}=?" for k in fields)
        with self._tx() as c:
            before = c.execute("SELECT status FROM runs WHERE run_id=?", (run_id,)).fetchone()
            c.execute(f"UPDATE runs SET {sets}, updated_at=? WHERE run_id=?", [*vals, time.time(), run_id])
            if "status" in fields and before is not None and before["status"] != fields["status"]:
                self._status_event(c, run_id)

    def cancel(self, run_id: str) -> bool:
        """Stop a running or paused run before its next step; False when it had already ended."""
        with self._tx() as c:
            cur = c.execute("UPDATE runs SET status='stopped', reason='cancelled', updated_at=? WHERE run_id=? AND "
                            "status IN ('running', 'paused')", (time.time(), run_id))  # fmt: skip
            if cur.rowcount:
                self._status_event(c, run_id)
            return bool(cur.rowcount)

    # events
    def _event(self, c: sqlite3.Connection, run_id: str, kind: str, data: dict[str, Any]) -> None:
        c.execute("INSERT INTO events (run_id, kind, data, ts) VALUES (?,?,?,?)",
                  (run_id, kind, json.dumps(data, default=str), time.time()))  # fmt: skip

    def _status_event(self, c: sqlite3.Connection, run_id: str) -> None:
        row = c.execute("SELECT status, reason, answer, steps, tokens FROM runs WHERE run_id=?", (run_id,)).fetchone()
        final = row["status"] in ("completed", "stopped", "failed")
        self._event(c, run_id, "result" if final else "status", dict(row))

    def events(self, run_id: str, after: int = 0, limit: int = 500) -> list[RunEvent]:
        """The run's events with an id above `after`, oldest first."""
        rows = self._conn().execute(
            "SELECT * FROM events WHERE run_id=? AND event_id>? ORDER BY event_id LIMIT ?", (run_id, after, limit)
        ).fetchall()
        return [RunEvent(r["event_id"], r["run_id"], r["kind"], json.loads(r["data"]), r["ts"]) for r in rows]

    # specs and idempotency keys of the HTTP API
    def put_spec(self, tenant: str, name: str, team: dict[str, Any]) -> None:
        with self._tx() as c:
            c.execute("INSERT OR REPLACE INTO specs VALUES (?,?,?,?)", (tenant, name, json.dumps(team), time.time()))

    def get_spec(self, tenant: str, name: str) -> dict[str, Any] | None:
        row = self._conn().execute("SELECT team FROM specs WHERE tenant=? AND name=?", (tenant, name)).fetchone()
        return None if row is None else dict(json.loads(row["team"]))

    def list_specs(self, tenant: str) -> list[tuple[str, dict[str, Any], float]]:
        rows = self._conn().execute("SELECT name, team, updated_at FROM specs WHERE tenant=? ORDER BY name",
                                    (tenant,)).fetchall()  # fmt: skip
        return [(r["name"], json.loads(r["team"]), r["updated_at"]) for r in rows]

    def run_for_key(self, tenant: str, key_hash: str) -> str | None:
        row = self._conn().execute("SELECT run_id FROM run_keys WHERE tenant=? AND key_hash=?",
                                   (tenant, key_hash)).fetchone()  # fmt: skip
        return None if row is None else str(row["run_id"])

    def bind_key(self, tenant: str, key_hash: str, run_id: str) -> str:
        """Bind an idempotency key to a run; returns the run the key names (an earlier one if it was bound)."""
        with self._tx() as c:
            c.execute("INSERT OR IGNORE INTO run_keys VALUES (?,?,?)", (tenant, key_hash, run_id))
            row = c.execute("SELECT run_id FROM run_keys WHERE tenant=? AND key_hash=?", (tenant, key_hash)).fetchone()
            return str(row["run_id"])

    # messages
    def messages(self, run_id: str) -> list[dict[str, Any]]:
        rows = self._conn().execute("SELECT message FROM messages WHERE run_id=? ORDER BY seq", (run_id,)).fetchall()
        return [json.loads(r["message"]) for r in rows]

    def messages_with_agents(self, run_id: str) -> list[tuple[str, dict[str, Any]]]:
        """(agent, message) pairs: which agent of a team wrote or received each message."""
        rows = (
            self._conn()
            .execute("SELECT agent, message FROM messages WHERE run_id=? ORDER BY seq", (run_id,))
            .fetchall()
        )
        return [(r["agent"], json.loads(r["message"])) for r in rows]

    def append_message(self, run_id: str, agent: str, message: dict[str, Any]) -> None:
        with self._tx() as c:
            (n,) = c.execute("SELECT COUNT(*) FROM messages WHERE run_id=?", (run_id,)).fetchone()
            c.execute("INSERT INTO messages VALUES (?,?,?,?)", (run_id, n, agent, json.dumps(message)))
            if message.get("role") == "assistant":
                calls = [{"call_id": tc.get("id"), "tool": tc.get("function", {}).get("name"),
                          "arguments": tc.get("function", {}).get("arguments")}
                         for tc in message.get("tool_calls") or []]  # fmt: skip
                self._event(c, run_id, "model_call", {"agent": agent, "content": message.get("content"),
                                                      "tool_calls": calls})  # fmt: skip
            elif message.get("role") != "tool":  # a tool's result is in its tool_call event
                self._event(c, run_id, "message", {"agent": agent, "role": message.get("role"),
                                                   "content": message.get("content")})  # fmt: skip

    # tool calls
    def get_call(self, run_id: str, call_id: str) -> CallRecord | None:
        row = (
            self._conn().execute("SELECT * FROM tool_calls WHERE run_id=? AND call_id=?", (run_id, call_id)).fetchone()
        )
        return None if row is None else _call(row)

    def calls(self, run_id: str) -> list[CallRecord]:
        rows = (
            self._conn().execute("SELECT * FROM tool_calls WHERE run_id=? ORDER BY step, rowid", (run_id,)).fetchall()
        )
        return [_call(r) for r in rows]

    def put_call(self, c: CallRecord) -> None:
        with self._tx() as conn:
            conn.execute(
                "INSERT OR REPLACE INTO tool_calls VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (c.run_id, c.call_id, c.idempotency_key, c.step, c.agent, c.name, json.dumps(c.arguments), c.status,
                 c.verdict, json.dumps(c.reasons), c.result, c.started_at, c.finished_at),
            )  # fmt: skip
            self._call_event(conn, c.run_id, c.call_id)

    def set_call_status(self, run_id: str, call_id: str, status: str, **fields: Any) -> None:
        assert status in CALL_STATUSES, status
        allowed = {"verdict", "result", "started_at", "finished_at"}
        assert set(fields) <= allowed, set(fields) - allowed
        sets = "".join(f", {k}=?" for k in fields)
        with self._tx() as c:
            c.execute(
                f"UPDATE tool_calls SET status=?{sets} WHERE run_id=? AND call_id=?",
                [status, *fields.values(), run_id, call_id],
            )
            self._call_event(c, run_id, call_id)

    def _call_event(self, c: sqlite3.Connection, run_id: str, call_id: str) -> None:
        row = c.execute("SELECT * FROM tool_calls WHERE run_id=? AND call_id=?", (run_id, call_id)).fetchone()
        if row is None:
            return
        rec = _call(row)
        data = {"call_id": rec.call_id, "agent": rec.agent, "tool": rec.name, "arguments": rec.arguments,
                "status": rec.status, "verdict": rec.verdict, "reasons": rec.reasons, "result": rec.result}
        self._event(c, run_id, "approval_request" if rec.status == "awaiting_approval" else "tool_call", data)

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None


def _alive(owner: str) -> bool:
    """Whether `host:pid` names a live process (other hosts are assumed alive: we cannot tell)."""
    host, _, pid = owner.rpartition(":")
    if host != socket.gethostname():
        return True
    try:
        os.kill(int(pid), 0)
    except (ProcessLookupError, ValueError):
        return False
    except PermissionError:
        return True
    return True


def _run(row: sqlite3.Row) -> RunRecord:
    d = dict(row)
    d["team"] = json.loads(d["team"])
    d["flags"] = json.loads(d["flags"])
    return RunRecord(**d)


def _call(row: sqlite3.Row) -> CallRecord:
    d = dict(row)
    d["arguments"] = json.loads(d["arguments"])
    d["reasons"] = json.loads(d["reasons"])
    return CallRecord(**d)
