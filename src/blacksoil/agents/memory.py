"""Long-term agent memory: facts an agent writes with `remember` and finds again with `recall`, per tenant and agent.

A spec enables it by naming the `memory` tool set. Facts live in SQLite with an FTS5 index (no new server), beside
the other tool sets' state (`<home>/agents/toolsets/memory/memory.sqlite`).

What is protected, and what is not (tests in tests/agents/test_agent_memory.py):
- Protected: a fact is anonymized before it is stored (the experience pillar's anonymizer: e-mails, phone numbers,
  cards, IBANs, keys, ... become `<EMAIL_ADDRESS>`), like every other stored text.
- Protected: recall only sees the calling agent's facts of the run's tenant; another tenant or agent finds none.
- Protected: `remember` and `recall` are tools like any other: the Cedar policies decide every call (a policy can
  forbid them, a role may lack them), and every call is audited. `remember` is state-changing and deduplicated by
  the call's idempotency key, so a crash and resume never stores a fact twice.
- Protected: a tenant's memory is purged whole (`blacksoil agent memory-purge`, `DELETE /v1/agents/memory`).
- Not protected: recalled facts are text an earlier run wrote; `recall` is marked untrusted_output, so the rule of
  two applies to what a run does after reading them, but the text itself is not filtered.
- Not protected: personal names and free-text health data (the anonymizer has no NER model offline).
"""

from __future__ import annotations

import re
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from blacksoil.agents.tools import Tool, ToolContext, ToolFlags
from blacksoil.errors import UserError

__all__ = ["MemoryStore", "MemoryToolset", "default_anonymize"]

FACT_MAX_CHARS = 2000
"""Longest fact `remember` stores (characters)."""
_SCHEMA = """
CREATE TABLE IF NOT EXISTS facts (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant TEXT NOT NULL,
    agent TEXT NOT NULL,
    text TEXT NOT NULL,
    call_key TEXT NOT NULL UNIQUE,
    created_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS facts_owner ON facts(tenant, agent);
CREATE VIRTUAL TABLE IF NOT EXISTS facts_fts USING fts5(text, content='facts', content_rowid='id');
CREATE TRIGGER IF NOT EXISTS facts_ai AFTER INSERT ON facts BEGIN
    INSERT INTO facts_fts(rowid, text) VALUES (new.id, new.text);
END;
CREATE TRIGGER IF NOT EXISTS facts_ad AFTER DELETE ON facts BEGIN
    INSERT INTO facts_fts(facts_fts, rowid, text) VALUES ('delete', old.id, old.text);
END;
"""
_WORD = re.compile(r"\w+", re.UNICODE)
_anonymizer: Any = None
_anonymizer_lock = threading.Lock()


def default_anonymize(text: str) -> str:
    """The experience pillar's anonymizer (redact mode), built once per process: building it loads Presidio."""
    global _anonymizer
    with _anonymizer_lock:
        if _anonymizer is None:
            from blacksoil.experience.anonymizer import Anonymizer

            _anonymizer = Anonymizer()
    out, _ = _anonymizer.anonymize_text(text)
    return str(out)


class MemoryStore:
    """Facts per (tenant, agent) with full-text search; one connection per thread."""

    def __init__(self, path: Path, anonymize: Callable[[str], str] = default_anonymize) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.anonymize = anonymize
        self._local = threading.local()
        self._conn().executescript(_SCHEMA)

    def _conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, isolation_level=None, timeout=30)
            conn.execute("PRAGMA journal_mode=WAL")
            self._local.conn = conn
        return conn

    def remember(self, tenant: str, agent: str, fact: str, call_key: str) -> tuple[int, str]:
        """Store a fact (anonymized); the same `call_key` stores it once. Returns (id, the text as stored)."""
        fact = fact.strip()
        if not fact:
            raise UserError("the fact is empty; pass the sentence to remember", param="fact")
        if len(fact) > FACT_MAX_CHARS:
            raise UserError(f"the fact is {len(fact)} characters; remember at most {FACT_MAX_CHARS}", param="fact")
        text = self.anonymize(fact)
        c = self._conn()
        c.execute("INSERT OR IGNORE INTO facts (tenant, agent, text, call_key, created_at) VALUES (?,?,?,?,?)",
                  (tenant, agent, text, call_key, time.time()))  # fmt: skip
        row = c.execute("SELECT id, text FROM facts WHERE call_key=?", (call_key,)).fetchone()
        return int(row[0]), str(row[1])

    def recall(self, tenant: str, agent: str, query: str, limit: int = 5) -> list[dict[str, Any]]:
        """The best-matching facts of (tenant, agent) for `query` (any of its words, ranked by BM25)."""
        words = _WORD.findall(query)
        if not words:
            raise UserError("the query has no words; pass words the fact may contain", param="query")
        # Each word quoted: user text never becomes FTS5 syntax (NEAR, column filters, ...).
        match = " OR ".join('"' + w.replace('"', "") + '"' for w in words[:32])
        rows = self._conn().execute(
            "SELECT f.id, f.text, f.created_at FROM facts_fts JOIN facts f ON f.id = facts_fts.rowid "
            "WHERE facts_fts MATCH ? AND f.tenant=? AND f.agent=? ORDER BY bm25(facts_fts) LIMIT ?",
            (match, tenant, agent, limit),
        ).fetchall()
        return [{"id": r[0], "fact": r[1], "created_at": r[2]} for r in rows]

    def count(self, tenant: str, agent: str | None = None) -> int:
        q, args = "SELECT COUNT(*) FROM facts WHERE tenant=?", [tenant]
        if agent is not None:
            q, args = q + " AND agent=?", [tenant, agent]
        return int(self._conn().execute(q, args).fetchone()[0])

    def purge(self, tenant: str) -> int:
        """Delete every fact of a tenant; returns how many."""
        c = self._conn()
        c.execute("BEGIN IMMEDIATE")
        try:
            n = c.execute("DELETE FROM facts WHERE tenant=?", (tenant,)).rowcount
            c.execute("COMMIT")
        except BaseException:
            c.execute("ROLLBACK")
            raise
        return int(n)

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None


def memory_path(toolsets_dir: Path) -> Path:
    """The memory file under the runtime's tool set folder."""
    return toolsets_dir / "memory" / "memory.sqlite"


class MemoryToolset:
    """The `memory` tool set: `remember` and `recall` bound to one tenant and agent (the toolbox passes both)."""

    def __init__(self, folder: Path | None, tenant: str = "default", agent: str = "agent", limit: int = 5) -> None:
        if folder is None:
            raise UserError("the memory tool set needs a state folder; open it through the agent runtime")
        self.store = MemoryStore(folder / "memory.sqlite")
        self.tenant, self.agent, self.limit = tenant, agent, limit

    def tools(self) -> list[Tool]:
        def remember(arguments: dict[str, Any], ctx: ToolContext) -> Any:
            fid, text = self.store.remember(self.tenant, self.agent, str(arguments.get("fact", "")),
                                            ctx.idempotency_key)  # fmt: skip
            return {"remembered": text, "id": fid}

        def recall(arguments: dict[str, Any], ctx: ToolContext) -> Any:
            return {"facts": self.store.recall(self.tenant, self.agent, str(arguments.get("query", "")), self.limit)}

        def schema(name: str, what: str) -> dict[str, Any]:
            return {"type": "object", "properties": {name: {"type": "string", "description": what,
                                                            "maxLength": FACT_MAX_CHARS}},
                    "required": [name], "additionalProperties": False}  # fmt: skip

        return [
            Tool("remember", "Store one fact in long-term memory for later runs.",
                 schema("fact", "The fact, one short sentence."), ToolFlags(state_changing=True), remember,
                 source="memory:remember", reentrant=True),
            Tool("recall", "Search long-term memory for facts stored by earlier runs.",
                 schema("query", "Words the fact may contain."), ToolFlags(untrusted_output=True), recall,
                 source="memory:recall"),
        ]  # fmt: skip

    def facts(self, run_id: str) -> dict[str, Any]:
        return {}
