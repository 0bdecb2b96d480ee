"""The agent runtime's bridge to blacksoil.security: policy decisions, approvals, audit, visible tools, sandbox.

The loop calls only this class, so the security layer's API meets the runtime in one place.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from blacksoil.agents.spec import AgentSpec
from blacksoil.agents.tools import Tool, ToolContext
from blacksoil.errors import ConfigError, PolicyDenied
from blacksoil.security.config import SecurityConfig


class Guard:
    """Policy check (with approvals and audit) before every tool call, and the sandbox for marked tools."""

    def __init__(self, agents: Sequence[AgentSpec], policy_files: Sequence[Path], audit_path: Path,
                 *, security: SecurityConfig | None = None) -> None:
        """`audit_path`: the audit log and approval store (home / security.store_file for the platform's runs);
        `security`: the security settings (extra policy files, sandbox limits); None = their defaults."""
        from blacksoil.security.audit import AuditLog
        from blacksoil.security.guard import Guard as SecurityGuard
        from blacksoil.security.policy import PolicyEngine

        self._security_config = security or SecurityConfig()
        files = [*(Path(f) for f in self._security_config.policy_files), *policy_files]
        for p in files:
            if not p.is_file():
                raise ConfigError(
                    f"policy file {str(p)!r} does not exist; fix the spec's `policies` or security.policy_files"
                )
        self._roles = {a.name: tuple(a.roles) for a in agents}
        self._sandbox: Any = None
        self.security = SecurityGuard(PolicyEngine.from_files(files), AuditLog(audit_path))

    def _principal(self, agent: str, tenant: str, user: str | None) -> Any:
        from blacksoil.security.calls import Principal

        return Principal(agent=agent, tenant=tenant, user=user, roles=self._roles.get(agent, ()))

    def _request(self, agent: str, tenant: str, user: str | None, tool: Tool, arguments: dict[str, Any],
                 run_id: str, call_key: str, facts: dict[str, Any]) -> Any:  # fmt: skip
        from blacksoil.security.calls import ToolCallRequest

        return ToolCallRequest(
            principal=self._principal(agent, tenant, user), tool=tool.name, arguments=arguments, run_id=run_id,
            call_id=call_key, traits=tool.flags, context=facts,
        )  # fmt: skip

    def check(
        self, *, agent: str, tenant: str, user: str | None, tool: Tool, arguments: dict[str, Any], run_id: str,
        call_key: str, run_flags: dict[str, bool], facts: dict[str, Any],
    ) -> tuple[str, list[str]]:  # fmt: skip
        """(verdict, reasons): allow, deny or approval_required, after any human decision on this call; audited.

        `call_key` identifies the call across all runs (the idempotency key): approvals are bound to it.
        """
        from blacksoil.security.calls import RunFlags

        req = self._request(agent, tenant, user, tool, arguments, run_id, call_key, facts)
        d = self.security.check(req, RunFlags(**run_flags))
        return d.verdict, list(d.reasons)

    def record_execution(self, *, agent: str, tenant: str, user: str | None, tool: Tool, arguments: dict[str, Any],
                         run_id: str, call_key: str, ok: bool, detail: dict[str, Any]) -> None:  # fmt: skip
        req = self._request(agent, tenant, user, tool, arguments, run_id, call_key, {})
        self.security.record_execution(req, ok, detail)

    def decide(self, call_key: str, *, approve: bool, by: str, note: str = "") -> None:
        """A human's decision on a pending call (recorded once, audited)."""
        if approve:
            self.security.approvals.approve(call_key, by, note)
        else:
            self.security.approvals.deny(call_key, by, note or "denied")

    def visible(
        self, agent: str, tenant: str, user: str | None, tools: Sequence[Tool], facts: dict[str, Any]
    ) -> list[str]:
        """Names of the tools the model may see: those the policy may permit this agent to call."""
        traits = {t.name: t.flags for t in tools}
        return self.security.visible_tools(self._principal(agent, tenant, user), [t.name for t in tools], traits, facts)

    def run_sandboxed(self, tool: Tool, arguments: dict[str, Any], ctx: ToolContext) -> Any:
        """Run a tool marked `sandboxed` in the security sandbox; a tool the sandbox cannot run does not run at all."""
        from blacksoil.agents.sandboxed import run_in_sandbox
        from blacksoil.security.sandbox import Sandbox

        if tool.isolated:
            return tool.invoke(arguments, ctx)
        if tool.function is None:
            raise PolicyDenied(
                f"tool {tool.name} ({tool.source}) is marked sandboxed but only Python function tools can run in "
                "the sandbox; it was not run (drop the flag or sandbox the server itself)"
            )
        if self._sandbox is None:
            self._sandbox = Sandbox(self._security_config)
        return run_in_sandbox(self._sandbox, tool, tool.function, arguments, ctx)

    def observe(self, run_flags: dict[str, bool], tool: Tool) -> dict[str, bool]:
        """The run's flags after it executed `tool` (they only grow); the policy entities' traits count too."""
        from blacksoil.security.calls import RunFlags

        f = RunFlags(**run_flags)
        f.observe(self.security.engine.traits_of(tool.name, tool.flags))
        return {
            "untrusted_input": f.untrusted_input,
            "sensitive_data": f.sensitive_data,
            "state_changing": f.state_changing,
        }
