"""Base class for every component's configuration.

Frozen, typed, extra keys forbidden, each field documented by the docstring under it.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

Fraction = Annotated[float, Field(ge=0.0, le=1.0)]
"""A share between 0 and 1, both included."""
PositiveFraction = Annotated[float, Field(gt=0.0, le=1.0)]
"""A share in (0, 1]: zero is not allowed."""


class ComponentConfig(BaseModel):
    """One component's settings: immutable once loaded, validated in one place."""

    model_config = ConfigDict(frozen=True, extra="forbid", use_attribute_docstrings=True)
