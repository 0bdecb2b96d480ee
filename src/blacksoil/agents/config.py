"""Settings of the agents pillar.

One frozen model, grouped under the root settings object (blacksoil.config.Settings.agents).
"""

from __future__ import annotations

from blacksoil.configbase import ComponentConfig


class AgentsConfig(ComponentConfig):
    """Settings of the agents pillar (fields are added by the pillar)."""
