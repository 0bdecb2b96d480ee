"""The experience store: anonymizes and writes events idempotently, and serves tenant-scoped reads.

SQLite (WAL, synchronous=FULL) by default, PostgreSQL by URL; the schema comes from the Alembic migrations.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config as AlembicConfig
from sqlalchemy import Engine, create_engine, event, inspect
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import ArgumentError, OperationalError
from sqlalchemy.orm import Session as OrmSession

from blacksoil.contracts import ExperienceEvent
from blacksoil.errors import ConfigError, NotFoundError, RetryableError
from blacksoil.experience.anonymizer import Anonymizer
from blacksoil.experience.config import ExperienceConfig
from blacksoil.experience.models import ModelCall, Reward, Tenant, ToolStep
from blacksoil.experience.models import Session as SessionRow
from blacksoil.experience.tenant import TenantStore

MIGRATIONS = Path(__file__).parent / "migrations"


def default_url(home: Path) -> str:
    """SQLite file under the blacksoil home."""
    home.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{home / 'experience.db'}"


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    # FULL: a commit is on disk when it returns, so an acknowledged emit survives a crash.
    cur.execute("PRAGMA synchronous=FULL")
    cur.execute("PRAGMA busy_timeout=10000")
    cur.close()


def make_engine(url: str) -> Engine:
    """An engine for `url`; SQLite gets WAL and a busy timeout, PostgreSQL a pre-ping pool."""
    try:
        if url.startswith("sqlite"):
            eng = create_engine(url, connect_args={"check_same_thread": False})
            event.listen(eng, "connect", _sqlite_pragmas)
            return eng
        return create_engine(url, pool_pre_ping=True)
    except (ArgumentError, ModuleNotFoundError) as e:
        raise ConfigError(f"experience store URL {url!r} is invalid ({e}); use sqlite:///path or "
                          "postgresql+psycopg://user:pass@host:port/db") from None


def migrate(engine: Engine) -> None:
    """Bring the schema to the newest Alembic revision."""
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")


class ExperienceStore:
    """One store for the gateway's model calls and the agent runtime's tool steps, per tenant."""

    def __init__(self, url: str, anonymizer: Anonymizer | None = None) -> None:
        self.url = url
        self.engine = make_engine(url)
        try:
            migrate(self.engine)
        except OperationalError as e:
            raise RetryableError(f"experience store at {self.engine.url!r} is unreachable: {e.orig}") from None
        self._anonymizer = anonymizer
        self._known_tenants: set[str] = set()

    @classmethod
    def from_settings(cls, home: Path, cfg: ExperienceConfig) -> ExperienceStore:
        """The store the settings describe (URL or SQLite under home) with their anonymizer."""
        from blacksoil.experience.anonymizer import load_or_create_key

        key = None
        if cfg.anonymize_mode == "encrypt":
            key = load_or_create_key(cfg.pseudonym_key_file or home / "keys" / "pii.key")
        id_key = load_or_create_key(cfg.id_key_file or home / "keys" / "id.key")
        anonymizer = Anonymizer(mode=cfg.anonymize_mode, key=key, score_threshold=cfg.pii_score_threshold,
                                id_key=id_key)
        return cls(cfg.db_url or default_url(home), anonymizer=anonymizer)

    @property
    def anonymizer(self) -> Anonymizer:
        if self._anonymizer is None:
            self._anonymizer = Anonymizer()
        return self._anonymizer

    @contextmanager
    def session(self) -> Iterator[OrmSession]:
        with OrmSession(self.engine) as s, s.begin():
            yield s

    def tenant(self, tenant_id: str) -> TenantStore:
        """The only read/write path to a tenant's data: every query it runs filters by tenant."""
        return TenantStore(self, tenant_id)

    def ingest(self, event: ExperienceEvent) -> bool:
        """Anonymize and commit one event; False when its event_id was already stored."""
        return self.write_anonymized([self.anonymizer.anonymize_event(event)]) == 1

    def ingest_many(self, events: Sequence[ExperienceEvent]) -> int:
        """Anonymize and commit a batch in one transaction; returns how many were new."""
        return self.write_anonymized([self.anonymizer.anonymize_event(e) for e in events])

    def import_jsonl(self, path: Path, batch: int = 200) -> tuple[int, int]:
        """Move a JSONL sink's file (the gateway's default) into the store: (events read, events new)."""
        import json

        if not path.is_file():
            raise NotFoundError(f"experience file {path} does not exist; pass the gateway's JSONL sink file")
        read = new = 0
        pending: list[ExperienceEvent] = []
        with path.open(encoding="utf-8") as f:
            for lineno, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    pending.append(ExperienceEvent.from_dict(json.loads(line)))
                except (json.JSONDecodeError, TypeError) as e:
                    raise ConfigError(f"{path}:{lineno} is not an ExperienceEvent JSON line ({e})") from None
                read += 1
                if len(pending) >= batch:
                    new += self.ingest_many(pending)
                    pending = []
        if pending:
            new += self.ingest_many(pending)
        return read, new

    def write_anonymized(self, events: Sequence[ExperienceEvent]) -> int:
        """Commit events that already went through the anonymizer (idempotent by event_id)."""
        for ev in events:
            if "pii_replaced" not in ev.metadata:
                raise ConfigError(f"event {ev.event_id} was not anonymized; call ExperienceStore.ingest")
        sessions: dict[tuple[str, str], dict[str, Any]] = {}
        rows: dict[Any, list[dict[str, Any]]] = {ModelCall: [], ToolStep: []}
        errors = []
        for ev in events:
            if ev.session_id:
                sessions.setdefault((ev.tenant, ev.session_id), {
                    "tenant_id": ev.tenant, "id": ev.session_id, "task_id": ev.metadata.get("task_id"),
                    "agent": ev.metadata.get("agent"), "created_at": ev.created_at})
            table, row = _row(ev)
            rows[table].append(row)
            if ev.kind == "tool_step" and ev.error:
                # A failed tool step is a reward signal of its own (source "tool_error").
                errors.append(tool_error_reward(ev))
        new = 0
        with self.session() as s:
            tenants = [{"id": t, "created_at": time.time()} for t in {ev.tenant for ev in events} - self._known_tenants]
            self._insert_ignore(s, Tenant, tenants, ["id"])
            self._insert_ignore(s, SessionRow, list(sessions.values()), ["tenant_id", "id"])
            for table, table_rows in rows.items():
                new += self._insert_ignore(s, table, table_rows, ["tenant_id", "event_id"])
            self._insert_ignore(s, Reward, errors, ["tenant_id", "dedup_key"])
        self._known_tenants |= {ev.tenant for ev in events}
        return new

    def _insert_ignore(self, s: OrmSession, table: Any, rows: list[dict[str, Any]], keys: list[str]) -> int:
        """INSERT ... ON CONFLICT DO NOTHING for all rows in one executemany; returns rows inserted."""
        if not rows:
            return 0
        dialect = postgresql if self.engine.dialect.name == "postgresql" else sqlite
        t = table.__table__
        # RETURNING counts the rows really inserted on both dialects (psycopg's executemany rowcount is -1).
        stmt = dialect.insert(t).on_conflict_do_nothing(index_elements=keys).returning(t.c[keys[-1]])
        return len(s.connection().execute(stmt, rows).all())

    def add_reward_row(self, row: dict[str, Any]) -> bool:
        """Insert a reward (idempotent on tenant + dedup_key); the tenant row is created if needed."""
        with self.session() as s:
            self._insert_ignore(s, Tenant, [{"id": row["tenant_id"], "created_at": time.time()}], ["id"])
            return self._insert_ignore(s, Reward, [row], ["tenant_id", "dedup_key"]) == 1

    def tenants(self) -> list[str]:
        """Tenant ids (for operators' CLI only; not reachable through tenant APIs)."""
        from sqlalchemy import select

        with self.session() as s:
            return list(s.scalars(select(Tenant.id).order_by(Tenant.id)))

    def table_names(self) -> list[str]:
        return inspect(self.engine).get_table_names()

    def close(self) -> None:
        self.engine.dispose()


def tool_error_reward(ev: ExperienceEvent) -> dict[str, Any]:
    """The -1 step reward a failed tool step earns."""
    return {"tenant_id": ev.tenant, "session_id": ev.session_id, "event_id": ev.event_id, "scope": "step",
            "value": -1.0, "source": "tool_error", "dedup_key": f"tool_error:{ev.event_id}",
            "detail": {"tool": ev.tool_name, "error": ev.error}, "created_at": ev.created_at}


def _row(ev: ExperienceEvent) -> tuple[Any, dict[str, Any]]:
    common = {
        "event_id": ev.event_id, "tenant_id": ev.tenant, "session_id": ev.session_id,
        "request_id": ev.request_id, "task_id": ev.metadata.get("task_id"), "error": ev.error,
        "timings": ev.timings, "metadata": ev.metadata, "created_at": ev.created_at,
    }
    if ev.kind == "model_call":
        return ModelCall, {
            **common, "model": ev.model, "adapter_version": ev.adapter_version, "messages": ev.messages,
            "tools": ev.tools, "response": ev.response, "prompt_token_ids": ev.prompt_token_ids,
            "completion_token_ids": ev.completion_token_ids, "completion_logprobs": ev.completion_logprobs,
            "usage": ev.usage,
        }
    if ev.kind == "tool_step":
        return ToolStep, {**common, "tool_name": ev.tool_name, "arguments": ev.tool_arguments,
                          "result": ev.response, "policy_verdict": ev.policy_verdict}
    raise ConfigError(f"event kind {ev.kind!r} is unknown; use 'model_call' or 'tool_step'")
