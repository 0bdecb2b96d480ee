"""The one typed settings object of blacksoil.

Sources, last wins: defaults < `blacksoil.toml` (or `BLACKSOIL_CONFIG`) < environment `BLACKSOIL_*`.
"""

from __future__ import annotations

import os
import re
from functools import lru_cache
from pathlib import Path
from typing import Any

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict, TomlConfigSettingsSource

from blacksoil.agents.config import AgentsConfig
from blacksoil.agentscore.config import AgentscoreConfig
from blacksoil.compression.config import CompressionConfig
from blacksoil.configbase import ComponentConfig
from blacksoil.errors import ConfigError
from blacksoil.experience.config import ExperienceConfig
from blacksoil.factories.manufacturing.config import ManufacturingConfig
from blacksoil.learning.config import LearningConfig
from blacksoil.scheduling.config import SchedulingConfig
from blacksoil.security.config import SecurityConfig
from blacksoil.serving.config import ServingConfig


class PlatformConfig(ComponentConfig):
    """How the pillars are assembled into one running platform."""

    api_keys: dict[str, str] = Field(default_factory=dict)
    """API key -> tenant. Empty: no authentication, tenant from the X-Tenant header (single-user installs)."""
    experience_sink: str = "store"
    """Where the gateway sends ExperienceEvents: `store` (anonymized SQLite/PostgreSQL) or `jsonl` (raw file)."""
    console: bool = True
    """Serve the web console at /console."""
    learner: bool = False
    """`blacksoil up` also runs learning rounds in the background."""
    learner_interval_s: float = 600.0
    """Seconds between background learning rounds (s)."""

    @field_validator("experience_sink")
    @classmethod
    def _sink(cls, v: str) -> str:
        if v not in ("store", "jsonl"):
            raise ValueError(f"experience_sink {v!r} is unknown; use 'store' or 'jsonl'")
        return v

    @field_validator("api_keys")
    @classmethod
    def _keys(cls, v: dict[str, str]) -> dict[str, str]:
        for key, tenant in v.items():
            if len(key) < 16:
                raise ValueError(f"the API key of tenant {tenant!r} is {len(key)} characters; use at least 16 "
                                 "random characters")
            if not tenant:
                raise ValueError("an API key maps to an empty tenant; name the tenant")
        return v


def _config_file() -> Path:
    return Path(os.environ.get("BLACKSOIL_CONFIG", "blacksoil.toml"))


class Settings(BaseSettings):
    """Root settings: one section per pillar."""

    model_config = SettingsConfigDict(
        env_prefix="BLACKSOIL_",
        env_nested_delimiter="__",
        frozen=True,
        extra="forbid",
        use_attribute_docstrings=True,
    )

    home: Path = Field(default_factory=lambda: Path("~/.blacksoil").expanduser())
    """Directory for models, stores, adapters, logs and run state (env BLACKSOIL_HOME)."""

    serving: ServingConfig = ServingConfig()
    """Gateway, engines and agent-aware scheduling."""
    agents: AgentsConfig = AgentsConfig()
    """Agent runtime: loop limits and durable sessions."""
    security: SecurityConfig = SecurityConfig()
    """Policies, sandbox, approvals and audit."""
    experience: ExperienceConfig = ExperienceConfig()
    """Experience capture, anonymization, store and replay."""
    learning: LearningConfig = LearningConfig()
    """LoRA learner, eval gate and adapter publishing."""
    compression: CompressionConfig = CompressionConfig()
    """Gradient compression for distributed learning."""
    scheduling: SchedulingConfig = SchedulingConfig()
    """Unified scheduler and its simulator."""
    agentscore: AgentscoreConfig = AgentscoreConfig()
    """The AgentScore benchmark."""
    manufacturing: ManufacturingConfig = ManufacturingConfig()
    """The manufacturing factory template."""
    platform: PlatformConfig = PlatformConfig()
    """How the pillars are assembled: API keys and tenants, experience sink, console, background learner."""

    @field_validator("home", mode="after")
    @classmethod
    def _expand_home(cls, v: Path) -> Path:
        return v.expanduser()

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, TomlConfigSettingsSource(settings_cls, toml_file=_config_file()))


_SECRET_NAME = re.compile(r"key|secret|token|passw|credential", re.I)
_URL_PASSWORD = re.compile(r"(://[^:/@\s]*:)[^@/\s]*@")
HIDDEN = "<hidden>"


def masked(value: Any, secret: bool = False) -> Any:
    """`value` as it may be printed: secrets (fields named like key/secret/token/password, URL passwords) hidden.

    A config error used to print every API key in clear.
    """
    if secret:
        return HIDDEN
    if isinstance(value, dict):
        return {k: masked(v, bool(_SECRET_NAME.search(str(k)))) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [masked(v) for v in value]
    if isinstance(value, str):
        return _URL_PASSWORD.sub(r"\1***@", value)
    return value


def _describe(err: ValidationError) -> str:
    parts = []
    for e in err.errors():
        where = ".".join(str(x) for x in e["loc"]) or "settings"
        env = "BLACKSOIL_" + "__".join(str(x).upper() for x in e["loc"])
        shown = masked(e.get("input"), any(_SECRET_NAME.search(str(x)) for x in e["loc"]))
        parts.append(f"{where}={shown!r}: {e['msg']} (set it in {_config_file()} or {env})")
    return "; ".join(parts)


def load_settings(**overrides: Any) -> Settings:
    """Build the settings from file, environment and overrides; bad values raise ConfigError."""
    try:
        return Settings(**overrides)
    except ValidationError as e:
        raise ConfigError(f"invalid configuration: {_describe(e)}") from None


@lru_cache(maxsize=1)
def settings() -> Settings:
    """The process-wide settings, loaded once."""
    return load_settings()
