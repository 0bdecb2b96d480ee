"""The tools of each agent in a team: Python tool sets, MCP servers and the multi-agent tools.

Opened lazily per agent and closed with the runtime; MCP sessions stay open across steps.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from blacksoil.agents.config import AgentsConfig
from blacksoil.agents.mcp_tools import MCPConnection, open_servers
from blacksoil.agents.multi import final_answer_tool, handoff_tool, worker_tool
from blacksoil.agents.spec import AgentSpec, AgentTeam
from blacksoil.agents.tools import Tool, ToolRegistry, Toolset, open_toolset
from blacksoil.errors import ConfigError
from blacksoil.factories.manufacturing.config import ManufacturingConfig
from blacksoil.security.config import SecurityConfig


def bound_strings(schema: dict[str, Any], limit: int) -> dict[str, Any]:
    """Copy of `schema` where free strings get `maxLength`: constrained decoding then cannot run on forever."""
    out = dict(schema)
    if out.get("type") == "string" and "enum" not in out and "maxLength" not in out:
        out["maxLength"] = limit
    for key in ("properties", "$defs"):
        if isinstance(out.get(key), dict):
            out[key] = {k: bound_strings(v, limit) if isinstance(v, dict) else v for k, v in out[key].items()}
    for key in ("items",):
        if isinstance(out.get(key), dict):
            out[key] = bound_strings(out[key], limit)
    for key in ("anyOf", "oneOf", "allOf"):
        if isinstance(out.get(key), list):
            out[key] = [bound_strings(v, limit) if isinstance(v, dict) else v for v in out[key]]
    return out


class Toolbox:
    """Per-agent tool registries and the policy facts their tool sets provide."""

    def __init__(self, team: AgentTeam, config: AgentsConfig, run_worker: Callable[[str, str, Any], str], *,
                 folder: Path, security: SecurityConfig | None = None,
                 plant: tuple[Path, ManufacturingConfig] | None = None) -> None:
        """`folder`: where stateful tool sets keep per-run state (one subfolder per tool set, e.g. the plant);
        `security`: the settings the sandbox tool set runs under (None = their defaults); `plant`: (home,
        manufacturing settings) of the manufacturing tool set's plants (None: plants without settings)."""
        self.team = team
        self.config = config
        self.folder = folder
        self.security = security or SecurityConfig()
        self.plant = plant
        self._run_worker = run_worker
        self._registries: dict[str, ToolRegistry] = {}
        self._toolsets: dict[str, list[Toolset]] = {}
        self._conns: list[MCPConnection] = []

    def registry(self, agent: AgentSpec) -> ToolRegistry:
        """All tools `agent` has, opening its tool sets and MCP servers on first use."""
        if agent.name not in self._registries:
            self._registries[agent.name] = self._build(agent)
        return self._registries[agent.name]

    def _build(self, agent: AgentSpec) -> ToolRegistry:
        toolsets = [open_toolset(ref, self._options(ref, agent), self.folder / ref) for ref in agent.tools]
        tools = [t for ts in toolsets for t in ts.tools()]
        if agent.include_tools:
            missing = set(agent.include_tools) - {t.name for t in tools}
            if missing:
                raise ConfigError(
                    f"agent {agent.name}: include_tools names {sorted(missing)}, which its tool sets lack"
                )
            by_name = {t.name: t for t in tools}
            tools = [by_name[n] for n in agent.include_tools]  # the spec's order is the order the model sees
        if agent.mcp_servers:
            conns, mcp_tools = open_servers(agent.mcp_servers, self.config.tool_timeout_s)
            self._conns.extend(conns)
            tools.extend(mcp_tools)
        tools = [replace(t, flags=agent.tool_flags[t.name].flags()) if t.name in agent.tool_flags else t for t in tools]
        tools = [replace(t, parameters=bound_strings(t.parameters, self.config.max_string_chars)) for t in tools]
        tools += [handoff_tool(a) for a in agent.handoffs]
        tools += [worker_tool(w, self._run_worker) for w in agent.workers]
        if agent.tool_choice == "required":
            tools.append(final_answer_tool())
        self._toolsets[agent.name] = toolsets
        return ToolRegistry(tools)

    def _options(self, ref: str, agent: AgentSpec) -> dict[str, Any] | None:
        """The spec's options of a tool set; the sandbox tool set also gets the security settings it runs under."""
        options = agent.toolset_options.get(ref)
        if ref == "sandbox":
            return {**(options or {}), "security": self.security}
        if ref == "manufacturing" and self.plant is not None:
            return {**(options or {}), "home": self.plant[0], "config": self.plant[1]}
        if ref == "memory":  # set last: a spec's options can never point memory at another tenant or agent
            return {**(options or {}), "tenant": agent.tenant, "agent": agent.name}
        return options

    def facts(self, agent: AgentSpec, run_id: str) -> dict[str, Any]:
        """World state the policies read, merged from the agent's tool sets."""
        self.registry(agent)
        merged: dict[str, Any] = {}
        for ts in self._toolsets[agent.name]:
            merged.update(ts.facts(run_id))
        return merged

    def visible(self, agent: AgentSpec, guard: Any, user: str | None, run_id: str) -> list[Tool]:
        """The tools shown to the model: only those the policy may permit for this agent."""
        reg = self.registry(agent)
        shown = set(guard.visible(agent.name, agent.tenant, user, list(reg), self.facts(agent, run_id)))
        return [t for t in reg if t.name in shown]

    def close(self) -> None:
        for c in self._conns:
            c.close()
        self._conns.clear()
        self._registries.clear()
