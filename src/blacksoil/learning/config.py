"""Settings of the learning pillar.

One frozen model, grouped under the root settings object (blacksoil.config.Settings.learning).
"""

from __future__ import annotations

from blacksoil.configbase import ComponentConfig


class LearningConfig(ComponentConfig):
    """Settings of the learning pillar (fields are added by the pillar)."""
