"""Settings of the manufacturing factory template.

One frozen model, grouped under the root settings object (blacksoil.config.Settings.manufacturing).
"""

from __future__ import annotations

from blacksoil.configbase import ComponentConfig


class ManufacturingConfig(ComponentConfig):
    """Settings of the manufacturing template (fields are added by the pillar)."""
