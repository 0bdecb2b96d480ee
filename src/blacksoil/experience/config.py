"""Settings of the experience pillar.

One frozen model, grouped under the root settings object (blacksoil.config.Settings.experience).
"""

from __future__ import annotations

from blacksoil.configbase import ComponentConfig


class ExperienceConfig(ComponentConfig):
    """Settings of the experience pillar (fields are added by the pillar)."""
