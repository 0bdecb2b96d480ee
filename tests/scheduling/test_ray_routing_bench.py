"""The routing bench's workload routes as it claims: each agent's sessions share one prefix key, the agents differ."""

from __future__ import annotations

from blacksoil.scheduling.backends.ray_routing_bench import system_prompt, tool_result
from blacksoil.serving.gateway import prefix_key


def _key(agent: str, ticket: str) -> str | None:
    return prefix_key({"messages": [{"role": "system", "content": system_prompt(agent)},
                                    {"role": "user", "content": ticket}]})


def test_sessions_of_one_agent_share_a_prefix_key() -> None:
    assert _key("maintenance", "Ticket 0") == _key("maintenance", "Ticket 2") is not None


def test_the_two_agents_have_different_prefix_keys() -> None:
    assert _key("maintenance", "Ticket 0") != _key("supply", "Ticket 0")


def test_tool_results_differ_per_session_and_turn() -> None:
    assert len({tool_result(k, t) for k in range(8) for t in range(4)}) == 32
