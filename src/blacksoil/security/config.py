"""Settings of the security pillar.

One frozen model, grouped under the root settings object (blacksoil.config.Settings.security).
"""

from __future__ import annotations

from blacksoil.configbase import ComponentConfig


class SecurityConfig(ComponentConfig):
    """Settings of the security pillar (fields are added by the pillar)."""
