"""Helpers of the agent runtime tests: the test agent's spec, teams, the in-memory experience sink.

A uniquely named module (not conftest) so test files import it unambiguously in a full-suite run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from blacksoil.agents.spec import AgentTeam, team_from_dict
from blacksoil.experience.sink import ListSink

__all__ = ["TEST_CEDAR", "ListSink", "clerk", "team"]

HERE = Path(__file__).parent
TEST_CEDAR = str(HERE / "data" / "test.cedar")


def clerk(**over: Any) -> dict[str, Any]:
    """A spec dict of the test agent: role clerk, the test tools, the test policies."""
    return {"name": "clerk", "roles": ["clerk"], "tools": ["agent_test_tools"], "policies": [TEST_CEDAR], **over}


def team(*agents: dict[str, Any]) -> AgentTeam:
    return team_from_dict({"agents": list(agents)} if len(agents) != 1 else agents[0])
