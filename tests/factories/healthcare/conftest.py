"""The healthcare tests reuse AgentScore's scripted model server (only the model is scripted in runtime tests)."""

from __future__ import annotations

from agentscore.conftest import scripted_chat

__all__ = ["scripted_chat"]
