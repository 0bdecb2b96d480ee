"""Sandboxed tools for agents: the security sandbox's tools per run, and Python tools run inside the sandbox.

Nothing marked `sandboxed` ever runs in the agent's own process; without bubblewrap such a call fails, never falls back.
"""

from __future__ import annotations

import inspect
import json
import textwrap
from pathlib import Path
from typing import Any

from blacksoil.agents.tools import Tool, ToolContext, ToolFlags
from blacksoil.errors import UserError
from blacksoil.security.config import SecurityConfig

_RUNNER = """
import json, sys
_args = json.loads(sys.stdin.read())
_out = {name}(**_args)
sys.stdout.write("\\n@@result@@" + json.dumps(_out, default=str))
"""


#: Sandbox tools that run code or change files: only roles the policies grant sandboxes (e.g. coder) get them.
_CHANGING = frozenset({"run_python", "run_shell", "write_file"})


def _root(run_id: str) -> str:
    return run_id.split(".", 1)[0]


class SandboxToolset:
    """run_python, run_shell, write_file, read_file, list_files in one workspace per run (security/sandbox_tools)."""

    def __init__(self, folder: Path | None = None, security: SecurityConfig | None = None) -> None:
        from blacksoil.security.sandbox import Sandbox

        # The runtime's Toolbox hands in the security settings (sandbox limits); None = their defaults.
        self.sandbox = Sandbox(security or SecurityConfig())

    def tools(self) -> list[Tool]:
        from blacksoil.factories.toolspec import bind
        from blacksoil.security.sandbox_tools import SANDBOX_TOOLS, Workspace

        def invoker(fn: Any) -> Any:
            def invoke(arguments: dict[str, Any], ctx: ToolContext) -> Any:
                return bind(fn, Workspace(self.sandbox, _root(ctx.run_id).replace(".", "_"))).call(arguments)

            return invoke

        out = []
        for fn in SANDBOX_TOOLS:
            spec = bind(fn, None)
            out.append(Tool(name=spec.name, description=spec.description, parameters=spec.parameters,
                            flags=ToolFlags(sandboxed=True, state_changing=spec.name in _CHANGING),
                            invoke=invoker(fn), source=f"sandbox:{spec.name}",
                            isolated=True))  # fmt: skip
        return out

    def facts(self, run_id: str) -> dict[str, Any]:
        return {}


def function_source(fn: Any) -> str:
    """The source of a self-contained function, decorators removed (it runs alone in the sandbox's python3)."""
    src = textwrap.dedent(inspect.getsource(fn))
    lines = src.splitlines()
    while lines and lines[0].lstrip().startswith("@"):
        lines.pop(0)
    return "\n".join(lines) + "\n"


def run_in_sandbox(sandbox: Any, tool: Tool, fn: Any, arguments: dict[str, Any], ctx: ToolContext) -> Any:
    """Run the Python tool `fn` with `arguments` inside the sandbox; its result comes back as JSON.

    The function runs in the system python3 with nothing but its own source: it must import what it needs
    in its body, and it sees only the run's workspace, no network and an empty environment.
    """
    from blacksoil.security.sandbox import SandboxSpec

    code = function_source(fn) + _RUNNER.format(name=fn.__name__)
    ws = sandbox.workspace_for(_root(ctx.run_id).replace(".", "_"))
    r = sandbox.run(SandboxSpec(code=code, stdin=json.dumps(arguments), workspace=ws))
    if not r.ok:
        tail = r.stderr.strip().splitlines()[-1] if r.stderr.strip() else ""
        raise UserError(f"sandboxed tool {tool.name} ended with {r.verdict} (exit {r.exit_code}): {tail}")
    _, sep, payload = r.stdout.rpartition("\n@@result@@")
    if not sep:
        raise UserError(f"sandboxed tool {tool.name} printed no result; it must return a JSON-able value")
    return json.loads(payload)
