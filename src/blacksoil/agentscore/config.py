"""Settings of the agentscore pillar.

One frozen model, grouped under the root settings object (blacksoil.config.Settings.agentscore).
"""

from __future__ import annotations

from blacksoil.configbase import ComponentConfig


class AgentscoreConfig(ComponentConfig):
    """Settings of the agentscore pillar (fields are added by the pillar)."""
