"""Settings of the scheduling pillar.

One frozen model, grouped under the root settings object (blacksoil.config.Settings.scheduling).
"""

from __future__ import annotations

from blacksoil.configbase import ComponentConfig


class SchedulingConfig(ComponentConfig):
    """Settings of the scheduling pillar (fields are added by the pillar)."""
