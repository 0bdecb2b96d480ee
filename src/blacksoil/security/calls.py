"""The types the agent runtime exchanges with the security layer about a tool call.

A `ToolCallRequest` (who, which tool, which arguments) plus the run's `RunFlags` go in; a `Decision` comes out.

What this layer protects, and what it does not (each point has a test in tests/security/):
- Protects: a tool call no policy permits is denied (deny by default) — test_policy::test_deny_by_default.
- Protects: a policy that fails to evaluate (missing argument, wrong type such as rpm="9999") denies instead of
  being skipped, as plain Cedar would — test_policy::test_type_confusion_fails_closed.
- Protects: the rule of two is enforced — untrusted input + sensitive data + a state-changing tool in one run
  needs a human approval even where policy permits the call — test_policy::test_rule_of_two.
- Protects: an agent acting for another tenant is denied — test_policy::test_cross_tenant_denied.
- Protects: tools the policy would deny are not even shown to the model — test_policy::test_visible_tools.
- Does not protect: against a tool whose declared traits lie (a state-changing tool declared read-only); traits
  come from the tool's author, who is trusted.
- Does not protect: against misuse that stays inside what the policy permits (a permitted speed change that is
  still a bad idea); policies must be written for that.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = ["Decision", "Principal", "RunFlags", "ToolCallRequest", "ToolTraits", "Verdict"]

Verdict = Literal["allow", "deny", "approval_required"]


@dataclass(frozen=True)
class Principal:
    """Who acts: the agent, the tenant it acts for and, when known, the human user behind the run."""

    agent: str
    tenant: str
    user: str | None = None
    roles: tuple[str, ...] = ()
    """Cedar roles (Role::"name" parents) of an agent the policy entities do not declare; set by the agent spec."""


@dataclass(frozen=True)
class ToolTraits:
    """What a tool declares about itself; the policy engine and the sandbox act on these flags."""

    sandboxed: bool = False
    """Runs in the sandbox (shell, code, file operations)."""
    requires_approval: bool = False
    """Every call pauses the run until a human approves or denies it."""
    state_changing: bool = False
    """Changes the world (setpoints, orders, messages sent out): counts for the rule of two."""
    sensitive: bool = False
    """Returns sensitive data (personal data, secrets, plant recipes): marks the run as holding sensitive data."""
    untrusted_output: bool = False
    """Returns content an outsider may control (documents, emails, web pages): marks the run's input untrusted."""


@dataclass(frozen=True)
class ToolCallRequest:
    """One tool call the model asked for, before it runs."""

    principal: Principal
    tool: str
    arguments: dict[str, Any]
    run_id: str
    call_id: str
    traits: ToolTraits = field(default_factory=ToolTraits)
    context: dict[str, Any] = field(default_factory=dict)
    """Facts the caller supplies for the policy (e.g. {"zones": {"Z1": {"under_maintenance": true}}})."""


@dataclass(frozen=True)
class Decision:
    """The verdict on one call, why, and which policies (by @id) decided it."""

    verdict: Verdict
    reasons: tuple[str, ...]
    policy_ids: tuple[str, ...] = ()

    @property
    def allowed(self) -> bool:
        return self.verdict == "allow"


@dataclass
class RunFlags:
    """What one run has been exposed to so far: the three legs of the rule of two.

    The runtime keeps one per run and calls `observe` after every executed call, so the flags only ever grow.
    """

    untrusted_input: bool = False
    """The run has read content an outsider may control (an injected instruction could be in it)."""
    sensitive_data: bool = False
    """The run has read sensitive data."""
    state_changing: bool = False
    """The run has called (or may call) tools that change the world."""

    def observe(self, traits: ToolTraits) -> None:
        """Record what an executed tool call exposed the run to."""
        self.untrusted_input |= traits.untrusted_output
        self.sensitive_data |= traits.sensitive
        self.state_changing |= traits.state_changing

    def rule_of_two_applies(self, traits: ToolTraits) -> bool:
        """True when this call would join untrusted input, sensitive data and a state change in one run."""
        return self.untrusted_input and (self.sensitive_data or traits.sensitive) and traits.state_changing

    def copy(self) -> RunFlags:
        return dataclasses.replace(self)
