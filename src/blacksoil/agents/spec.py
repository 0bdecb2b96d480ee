"""Agent specs: model, system prompt, tools, limits, handoffs and workers, from YAML or Python.

A spec is plain data; `blacksoil.agents.loop` turns it into a running agent.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from blacksoil.agents.mcp_tools import MCPServerSpec, ToolFlagsSpec
from blacksoil.errors import ConfigError, NotFoundError

__all__ = ["AgentSpec", "AgentTeam", "Limits", "load_team", "team_from_dict"]


class Limits(BaseModel):
    """Budgets of one run; None falls back to the runtime's AgentsConfig."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_steps: int | None = Field(default=None, ge=1)
    """Model calls per run (count)."""
    max_tokens: int | None = Field(default=None, ge=1)
    """Prompt + completion tokens per run (tokens)."""
    max_wall_s: float | None = Field(default=None, gt=0)
    """Wall-clock time per run (seconds)."""


class AgentSpec(BaseModel):
    """One agent: what model it uses, what it is told, what it may call and how long it may run."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    """Agent name; the policy principal and the handoff target name."""
    model: str | None = None
    """Model name sent to the gateway; None uses the gateway's default model."""
    system_prompt: str = "You are a helpful agent. Use the tools to do the task, then answer briefly."
    """System message of every run."""
    tools: list[str] = Field(default_factory=list)
    """Tool sets: `manufacturing`, a module path, or `module:function`."""
    include_tools: list[str] = Field(default_factory=list)
    """Only these tools of the tool sets (empty = all); fewer tools make small models choose better."""
    stop_at_tools: list[str] = Field(default_factory=list)
    """When one of these tools succeeds the run completes and its result is the answer (no further model call)."""
    toolset_options: dict[str, dict[str, Any]] = Field(default_factory=dict)
    """Options per named tool set, e.g. {manufacturing: {seed: 3}}."""
    tool_flags: dict[str, ToolFlagsSpec] = Field(default_factory=dict)
    """Per-tool flag overrides for Python tools (e.g. mark a tool requires_approval)."""
    mcp_servers: list[MCPServerSpec] = Field(default_factory=list)
    """MCP servers whose tools this agent may call."""
    limits: Limits = Field(default_factory=Limits)
    """Step, token and wall-time budgets."""
    handoffs: list[str] = Field(default_factory=list)
    """Agents this one may hand the conversation to (a `handoff_to_<name>` tool each)."""
    workers: list[str] = Field(default_factory=list)
    """Agents this one supervises: each becomes an `ask_<name>` tool that runs a sub-run."""
    roles: list[str] = Field(default_factory=list)
    """Cedar roles of the agent (e.g. `plant_operator`): policies grant tools to roles."""
    policies: list[str] = Field(default_factory=list)
    """Extra Cedar policy files, relative to the spec file; added to the shipped policies."""
    colocation_group: str | None = None
    """Scheduler hint: agents in one group should share a node."""
    tenant: str = "default"
    """Tenant the runs belong to (policy principal, audit, experience)."""
    tool_choice: str = "auto"
    """`auto` (the model may answer), `required` (every step calls a tool; the run ends via a `final_answer`
    tool) or `required_first` (the first step must call a tool, later steps may answer)."""

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not v.replace("_", "").replace("-", "").isalnum():
            raise ValueError(f"agent name {v!r} must be letters, digits, '-' or '_'")
        return v

    @field_validator("tool_choice")
    @classmethod
    def _choice(cls, v: str) -> str:
        if v not in ("auto", "required", "required_first"):
            raise ValueError(f"tool_choice {v!r} must be 'auto', 'required' or 'required_first'")
        return v


class AgentTeam(BaseModel):
    """A spec file: one agent, or several with the first as the entry agent."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    agents: list[AgentSpec]
    source: str | None = None

    @property
    def entry(self) -> AgentSpec:
        return self.agents[0]

    def get(self, name: str) -> AgentSpec:
        for a in self.agents:
            if a.name == name:
                return a
        raise NotFoundError(
            f"agent {name!r} is not in {self.source or 'the team'}; known: {[a.name for a in self.agents]}"
        )

    def check(self) -> AgentTeam:
        """Every handoff and worker names an agent of the team."""
        names = {a.name for a in self.agents}
        if len(names) != len(self.agents):
            raise ConfigError(f"{self.source}: agent names must be unique, got {[a.name for a in self.agents]}")
        for a in self.agents:
            for ref in [*a.handoffs, *a.workers]:
                if ref not in names:
                    raise ConfigError(
                        f"{self.source}: agent {a.name!r} refers to unknown agent {ref!r}; known: {sorted(names)}"
                    )
        return self


def team_from_dict(data: Any, source: str = "<dict>") -> AgentTeam:
    """Build a team from parsed YAML: either one agent mapping or {agents: [...]}."""
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a mapping with `name` or `agents`, got {type(data).__name__}")
    try:
        agents = [AgentSpec(**a) for a in data["agents"]] if "agents" in data else [AgentSpec(**data)]
    except ValidationError as e:
        parts = [f"{'.'.join(str(x) for x in err['loc'])}: {err['msg']}" for err in e.errors()]
        raise ConfigError(f"{source}: invalid agent spec: {'; '.join(parts)}") from None
    except TypeError as e:
        raise ConfigError(f"{source}: invalid agent spec: {e}") from None
    if not agents:
        raise ConfigError(f"{source}: `agents` is empty; list at least one agent")
    return AgentTeam(agents=agents, source=source).check()


def load_team(path: str | Path) -> AgentTeam:
    """Read a YAML spec file."""
    p = Path(path)
    if not p.is_file():
        raise NotFoundError(f"agent spec {str(p)!r} not found; pass a YAML file such as examples/agents/plant.yaml")
    try:
        data = yaml.safe_load(p.read_text())
    except yaml.YAMLError as e:
        raise ConfigError(f"{p}: not valid YAML ({e})") from None
    if isinstance(data, dict):
        # Policy files are written relative to the spec so a spec folder is self-contained.
        for a in data.get("agents", [data]):
            if isinstance(a, dict) and isinstance(a.get("policies"), list):
                a["policies"] = [str((p.parent / f).resolve()) for f in a["policies"]]
    return team_from_dict(data, str(p))
