"""Settings of the compression pillar.

One frozen model, grouped under the root settings object (blacksoil.config.Settings.compression).
"""

from __future__ import annotations

from blacksoil.configbase import ComponentConfig


class CompressionConfig(ComponentConfig):
    """Settings of the compression pillar (fields are added by the pillar)."""
