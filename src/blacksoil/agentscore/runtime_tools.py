"""AgentScore environments as an agent-runtime tool set: the tools-basic and job-shop tools of one live episode.

The runner builds the task's environment, `lend`s it under the run id, and the runtime's `agentscore_env` tool set
calls the tools on exactly that object, so the checker reads the state the runtime left (in this process only).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from blacksoil.agents.tools import Tool, ToolContext, ToolFlags
from blacksoil.errors import ConfigError
from blacksoil.factories.toolspec import ToolSpec, to_json

from .environments import Environment

#: Tools that change an AgentScore environment (policies treat them as state-changing; see policies/).
STATE_CHANGING = frozenset({"save_number", "save_text", "send_message", "dispatch_schedule", "submit_schedule",
                            # the embodied cell (factories/embodied/tools.py): everything but get_scene moves something
                            "move_to", "open_gripper", "close_gripper", "pick", "place", "push", "inspect",
                            "set_conveyor", "wait", "home", "stop", "set_keepout"})

_LIVE: dict[str, Environment] = {}
_LOCK = threading.Lock()


@contextmanager
def lend(key: str, env: Environment) -> Iterator[None]:
    """Make `env` reachable to the `agentscore_env` tool set as `{key: ...}` for the duration of one episode."""
    with _LOCK:
        if key in _LIVE:
            raise ConfigError(f"environment key {key!r} is already lent to a run; use a fresh run id")
        _LIVE[key] = env
    try:
        yield
    finally:
        with _LOCK:
            _LIVE.pop(key, None)


class EnvToolset:
    """The tools of one lent environment, as runtime tools (`toolset_options: {agentscore_env: {key: ...}}`)."""

    def __init__(self, folder: Path | None = None, key: str = "") -> None:
        with _LOCK:
            env = _LIVE.get(key)
        if env is None:
            # Environments live in the scoring process only: a resumed run in another process cannot find them.
            raise ConfigError(f"no AgentScore environment is lent under key {key!r}; run the task through "
                              "blacksoil.agentscore (api.run_task) rather than a stand-alone agent run")
        self.env = env

    def tools(self) -> list[Tool]:
        """Every tool of the environment; AgentScore's include_tools narrows them to the task's."""
        # An environment may declare its tools' safety flags (the hospital: PHI reads are sensitive).
        traits = getattr(self.env, "tool_traits", None)
        declared: dict[str, ToolFlags] = dict(traits()) if callable(traits) else {}
        return [_as_tool(spec, declared.get(spec.name)) for spec in self.env.tools()]

    def facts(self, run_id: str) -> dict[str, Any]:
        """World facts for the policies when the environment has them (the embodied cell), else none."""
        facts = getattr(self.env, "facts", None)
        return dict(facts()) if callable(facts) else {}


def _as_tool(spec: ToolSpec, flags: ToolFlags | None = None) -> Tool:
    def invoke(arguments: dict[str, Any], ctx: ToolContext) -> Any:
        # The runtime shows results as text; a JSON round trip keeps them JSON-able (dates, tuples).
        return json.loads(to_json(spec.call(arguments)))

    params = {**spec.parameters,
              "properties": {k: {kk: vv for kk, vv in v.items() if kk != "nullable"}
                             for k, v in spec.parameters.get("properties", {}).items()}}
    return Tool(name=spec.name, description=spec.description, parameters=params,
                flags=flags or ToolFlags(state_changing=spec.name in STATE_CHANGING), invoke=invoke,
                source=f"python:{spec.fn.__module__}.{getattr(spec.fn, '__name__', spec.name)}")
