"""Settings of the experience pillar.

One frozen model, grouped under the root settings object (blacksoil.config.Settings.experience).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator

from blacksoil.configbase import ComponentConfig

DEFAULT_PRIORITY_WEIGHTS = {"failure": 1.0, "advantage": 1.0, "learnability": 2.0, "recency": 0.25, "novelty": 0.5}


class ExperienceConfig(ComponentConfig):
    """Experience capture, anonymization, store and prioritized replay."""

    db_url: str | None = None
    """SQLAlchemy URL of the store (e.g. postgresql+psycopg://u:p@host/db); None = SQLite file <home>/experience.db."""
    anonymize_mode: Literal["redact", "encrypt"] = "redact"
    """How PII is removed before storage: `redact` (one-way `<TYPE>`) or `encrypt` (reversible with the key)."""
    pseudonym_key_file: Path | None = None
    """AES key file (64 hex chars) for `encrypt` mode, kept outside the store; None = <home>/keys/pii.key."""
    id_key_file: Path | None = None
    """Key file (64 hex chars) of the keyed hash that replaces identifiers holding PII (session ids, tenants,
    idempotency keys); None = <home>/keys/id.key, created on first use."""
    pii_score_threshold: float = 0.35
    """Minimum recognizer score (0..1) for a span to count as PII."""
    replay_capacity: int = 1_000_000
    """Items the prioritized replay buffer holds (oldest are overwritten)."""
    replay_alpha: float = 0.6
    """Priority exponent α (0 = uniform, 1 = fully proportional)."""
    replay_beta0: float = 0.4
    """Initial importance-sampling exponent β, annealed linearly to 1."""
    replay_beta_steps: int = 100_000
    """Number of `sample` calls over which β reaches 1."""
    replay_max_staleness: int = 4
    """Items older than this many policy versions behind the learner are never sampled (versions)."""
    replay_eps: float = 1e-3
    """Added to every priority so no item has probability zero (priority units)."""
    recency_half_life_s: float = 86_400.0
    """Half-life of the recency term of a priority (seconds)."""
    priority_weights: dict[str, float] = Field(default_factory=lambda: dict(DEFAULT_PRIORITY_WEIGHTS))
    """Weight of each priority source (dimensionless): failure, advantage, learnability, recency, novelty."""

    @field_validator("pii_score_threshold")
    @classmethod
    def _threshold(cls, v: float) -> float:
        if not 0.0 <= v <= 1.0:
            raise ValueError(f"pii_score_threshold={v} must be in [0, 1]")
        return v

    @field_validator("replay_alpha", "replay_beta0")
    @classmethod
    def _unit(cls, v: float) -> float:
        if not 0.0 <= v <= 1.0:
            raise ValueError(f"{v} must be in [0, 1]")
        return v

    @field_validator("replay_capacity", "replay_beta_steps")
    @classmethod
    def _positive(cls, v: int) -> int:
        if v < 1:
            raise ValueError(f"{v} must be >= 1")
        return v

    @model_validator(mode="after")
    def _weights(self) -> ExperienceConfig:
        unknown = set(self.priority_weights) - {"failure", "advantage", "learnability", "recency", "novelty"}
        if unknown:
            raise ValueError(f"unknown priority source(s) {sorted(unknown)}; use failure, advantage, "
                             "learnability, recency, novelty")
        return self
