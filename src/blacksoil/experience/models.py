"""SQLAlchemy 2 tables of the experience store: tenants, sessions, tasks, model calls, tool steps, rewards.

Every row carries `tenant_id`; the schema is created and evolved by the Alembic migrations beside it.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import JSON, Float, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    """Declarative base of the experience schema."""


class Tenant(Base):
    __tablename__ = "tenants"
    id: Mapped[str] = mapped_column(String(128), primary_key=True)
    created_at: Mapped[float] = mapped_column(Float)


class Session(Base):
    __tablename__ = "sessions"
    tenant_id: Mapped[str] = mapped_column(String(128), ForeignKey("tenants.id"), primary_key=True)
    id: Mapped[str] = mapped_column(String(256), primary_key=True)
    task_id: Mapped[str | None] = mapped_column(String(256), nullable=True)
    agent: Mapped[str | None] = mapped_column(String(256), nullable=True)
    created_at: Mapped[float] = mapped_column(Float)


class Task(Base):
    __tablename__ = "tasks"
    tenant_id: Mapped[str] = mapped_column(String(128), ForeignKey("tenants.id"), primary_key=True)
    id: Mapped[str] = mapped_column(String(256), primary_key=True)
    split: Mapped[str] = mapped_column(String(32), default="train")


class ModelCall(Base):
    __tablename__ = "model_calls"
    tenant_id: Mapped[str] = mapped_column(String(128), ForeignKey("tenants.id"), primary_key=True)
    event_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    session_id: Mapped[str | None] = mapped_column(String(256), nullable=True)
    request_id: Mapped[str | None] = mapped_column(String(256), nullable=True)
    task_id: Mapped[str | None] = mapped_column(String(256), nullable=True)
    model: Mapped[str | None] = mapped_column(String(256), nullable=True)
    adapter_version: Mapped[str | None] = mapped_column(String(128), nullable=True)
    messages: Mapped[Any] = mapped_column(JSON)
    tools: Mapped[Any] = mapped_column(JSON, nullable=True)
    response: Mapped[Any] = mapped_column(JSON)
    prompt_token_ids: Mapped[Any] = mapped_column(JSON, nullable=True)
    completion_token_ids: Mapped[Any] = mapped_column(JSON, nullable=True)
    completion_logprobs: Mapped[Any] = mapped_column(JSON, nullable=True)
    timings: Mapped[Any] = mapped_column(JSON)
    usage: Mapped[Any] = mapped_column(JSON)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    meta: Mapped[Any] = mapped_column("metadata", JSON)
    created_at: Mapped[float] = mapped_column(Float)

    __table_args__ = (Index("ix_model_calls_tenant_session", "tenant_id", "session_id"),)


class ToolStep(Base):
    __tablename__ = "tool_steps"
    tenant_id: Mapped[str] = mapped_column(String(128), ForeignKey("tenants.id"), primary_key=True)
    event_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    session_id: Mapped[str | None] = mapped_column(String(256), nullable=True)
    request_id: Mapped[str | None] = mapped_column(String(256), nullable=True)
    task_id: Mapped[str | None] = mapped_column(String(256), nullable=True)
    tool_name: Mapped[str | None] = mapped_column(String(256), nullable=True)
    arguments: Mapped[Any] = mapped_column(JSON, nullable=True)
    result: Mapped[Any] = mapped_column(JSON)
    policy_verdict: Mapped[str | None] = mapped_column(String(64), nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    timings: Mapped[Any] = mapped_column(JSON)
    meta: Mapped[Any] = mapped_column("metadata", JSON)
    created_at: Mapped[float] = mapped_column(Float)

    __table_args__ = (Index("ix_tool_steps_tenant_session", "tenant_id", "session_id"),)


class Reward(Base):
    __tablename__ = "rewards"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    tenant_id: Mapped[str] = mapped_column(String(128), ForeignKey("tenants.id"), index=True)
    session_id: Mapped[str | None] = mapped_column(String(256), nullable=True)
    event_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    scope: Mapped[str] = mapped_column(String(16))
    value: Mapped[float] = mapped_column(Float)
    source: Mapped[str] = mapped_column(String(32))
    dedup_key: Mapped[str] = mapped_column(String(256))
    detail: Mapped[Any] = mapped_column(JSON)
    created_at: Mapped[float] = mapped_column(Float)

    __table_args__ = (UniqueConstraint("tenant_id", "dedup_key", name="uq_rewards_tenant_dedup"),)


class ReplayItem(Base):
    """One trajectory in the persistent prioritized replay: a rewarded session of an opted-in tenant.

    The index and its priorities live here so a restarted learner samples from where it left off; the sum tree
    in memory is rebuilt from these rows.
    """

    __tablename__ = "replay_items"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    tenant_id: Mapped[str] = mapped_column(String(128), ForeignKey("tenants.id"))
    session_id: Mapped[str] = mapped_column(String(256))
    task_id: Mapped[str | None] = mapped_column(String(256), nullable=True)
    reward: Mapped[float] = mapped_column(Float)
    source: Mapped[str] = mapped_column(String(32))
    failed: Mapped[int] = mapped_column(Integer, default=0)
    policy_version: Mapped[int] = mapped_column(Integer, default=0)
    priority: Mapped[float] = mapped_column(Float)
    content_hash: Mapped[str | None] = mapped_column(String(64), nullable=True)
    first_reward_id: Mapped[int] = mapped_column(Integer)
    last_reward_id: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[float] = mapped_column(Float)
    sampled: Mapped[int] = mapped_column(Integer, default=0)

    __table_args__ = (UniqueConstraint("tenant_id", "session_id", name="uq_replay_tenant_session"),)


class ReplayCursor(Base):
    """How far the replay index has read each tenant's rewards (the highest reward id seen)."""

    __tablename__ = "replay_cursors"
    tenant_id: Mapped[str] = mapped_column(String(128), ForeignKey("tenants.id"), primary_key=True)
    last_reward_id: Mapped[int] = mapped_column(Integer, default=0)
