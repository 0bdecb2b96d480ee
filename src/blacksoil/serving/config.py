"""Settings of the serving pillar.

One frozen model, grouped under the root settings object (blacksoil.config.Settings.serving).
"""

from __future__ import annotations

from blacksoil.configbase import ComponentConfig


class ServingConfig(ComponentConfig):
    """Settings of the serving pillar (fields are added by the pillar)."""
