"""Base class for every component's configuration.

Frozen, typed, extra keys forbidden, each field documented by the docstring under it.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class ComponentConfig(BaseModel):
    """One component's settings: immutable once loaded, validated in one place."""

    model_config = ConfigDict(frozen=True, extra="forbid", use_attribute_docstrings=True)
