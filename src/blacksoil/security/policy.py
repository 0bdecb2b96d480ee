"""Cedar policies over tool calls: principal = the agent, action = call_tool, resource = the tool, context = arguments.

Deny by default; forbid policies annotated `@approval("why")` turn a permitted call into one that needs a human.

What this protects, and what it does not (tests in tests/security/test_policy.py):
- Protects: any call no permit policy matches is denied — test_deny_by_default.
- Protects: a policy that errors (argument missing or of the wrong type, e.g. rpm="99999") denies the call; plain
  Cedar silently skips erroring policies, which would fail open — test_type_confusion_fails_closed.
- Protects: float arguments cannot slip past integer comparisons (floats become whole numbers rounded up, or
  the call is denied when they do not fit) — test_float_argument_rounds_up.
- Protects: an agent whose entity belongs to another tenant than the run's tenant is denied —
  test_cross_tenant_denied.
- Protects: the caller's facts cannot overwrite the arguments, tenant or run flags in the context (they live
  under `context.facts`) — test_facts_cannot_shadow_arguments.
- Does not protect: against wrong facts supplied by the caller (zone states are trusted input from the runtime).
- Does not protect: policies that permit too much; a test per shipped policy checks its intent.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import cedarpy

from blacksoil.errors import ConfigError, UserError
from blacksoil.security.calls import Decision, Principal, RunFlags, ToolCallRequest, ToolTraits

__all__ = ["CALL_ACTION", "PolicyEngine", "shipped_entities", "shipped_policies", "to_cedar_value"]

CALL_ACTION = 'Action::"call_tool"'
_MAX_LONG = 2**63 - 1
_TRAIT_NAMES = frozenset(f.name for f in dataclasses.fields(ToolTraits))
_EMPTY: dict[str, Any] = {"templates": {}, "staticPolicies": {}, "templateLinks": []}


def shipped_policies() -> str:
    """The Cedar text of the policies shipped with blacksoil (defaults and the manufacturing examples)."""
    folder = resources.files("blacksoil.security") / "policies"
    texts = [f.read_text() for f in sorted(folder.iterdir(), key=lambda p: p.name) if f.name.endswith(".cedar")]
    return "\n".join(texts)


def shipped_entities() -> list[dict[str, Any]]:
    """The Cedar entities shipped beside the policies (tool groups, agent roles, tenants)."""
    path = resources.files("blacksoil.security") / "policies" / "entities.json"
    data: list[dict[str, Any]] = json.loads(path.read_text())
    return data


def to_cedar_value(value: Any, where: str) -> Any:
    """A JSON value Cedar accepts: floats become whole numbers rounded away from zero (an rpm of 3000.5
    must not compare as 3000), None becomes absent, nested dicts and lists are converted recursively."""
    if isinstance(value, (bool, str)):
        return value
    if isinstance(value, int):
        if abs(value) > _MAX_LONG:
            raise UserError(f"argument {where}={value} does not fit a 64-bit integer; pass a smaller number")
        return value
    if isinstance(value, float):
        if not math.isfinite(value) or abs(value) > _MAX_LONG:
            raise UserError(f"argument {where}={value} is not a finite 64-bit number; pass a finite value")
        return math.ceil(value) if value >= 0 else math.floor(value)
    if isinstance(value, Mapping):
        return {str(k): to_cedar_value(v, f"{where}.{k}") for k, v in value.items() if v is not None}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [to_cedar_value(v, f"{where}[]") for v in value if v is not None]
    raise UserError(f"argument {where} has type {type(value).__name__}, which a policy cannot read; "
                    "pass JSON values (str, int, float, bool, list, dict)")


def _traits_record(traits: ToolTraits) -> dict[str, bool]:
    return {
        "sandboxed": traits.sandboxed, "requires_approval": traits.requires_approval,
        "state_changing": traits.state_changing, "sensitive": traits.sensitive,
        "untrusted_output": traits.untrusted_output,
    }


def _uid(kind: str, name: str) -> dict[str, str]:
    return {"type": kind, "id": name}


class PolicyEngine:
    """Evaluates every tool call against a Cedar policy set; deny by default, fail closed on policy errors."""

    def __init__(self, policies: str | Path | None = None, entities: Sequence[Mapping[str, Any]] | None = None) -> None:
        text = shipped_policies() if policies is None else (
            policies.read_text() if isinstance(policies, Path) else policies)
        self._entity_list = [dict(e) for e in (shipped_entities() if entities is None else entities)]
        self._known = {(e["uid"]["type"], e["uid"]["id"]) for e in self._entity_list}
        self._declared_traits = {
            e["uid"]["id"]: ToolTraits(**{k: bool(v) for k, v in e.get("attrs", {}).items() if k in _TRAIT_NAMES})
            for e in self._entity_list if e["uid"]["type"] == "Tool"
        }
        try:
            doc = json.loads(cedarpy.policies_to_json_str(text))
            self._entities = cedarpy.Entities.from_json_str(json.dumps(self._entity_list))
        except ValueError as e:
            raise ConfigError(
                f"invalid Cedar policies or entities: {e}; fix the .cedar text or entities JSON") from None
        static: dict[str, Any] = doc.get("staticPolicies", {})
        if doc.get("templates"):
            raise ConfigError("Cedar templates are not supported here; write static policies")
        self._annotations = {pid: p.get("annotations", {}) for pid, p in static.items()}
        hard = {pid: p for pid, p in static.items() if "approval" not in p.get("annotations", {})}
        self.policy_count = len(static)
        self._all = cedarpy.PolicySet.from_json_str(json.dumps({**_EMPTY, "staticPolicies": static}))
        self._hard = cedarpy.PolicySet.from_json_str(json.dumps({**_EMPTY, "staticPolicies": hard}))

    @classmethod
    def from_files(cls, paths: Iterable[Path], *, with_shipped: bool = True) -> PolicyEngine:
        """Shipped policies plus the given .cedar files (e.g. the security settings' policy_files)."""
        texts = [shipped_policies()] if with_shipped else []
        for p in paths:
            if not p.is_file():
                raise ConfigError(f"policy file {p} does not exist; fix security.policy_files")
            texts.append(p.read_text())
        return cls("\n".join(texts))

    # -- requests -----------------------------------------------------------------------------------------------

    def traits_of(self, tool: str, declared_by_caller: ToolTraits) -> ToolTraits:
        """The stricter union of what the caller and the policy entities say about a tool."""
        known = self._declared_traits.get(tool)
        if known is None:
            return declared_by_caller
        merged = {f: getattr(known, f) or getattr(declared_by_caller, f) for f in _TRAIT_NAMES}
        return ToolTraits(**merged)

    def _request(self, req: ToolCallRequest, run_flags: RunFlags) -> tuple[dict[str, Any], cedarpy.Entities]:
        context = {
            "arguments": to_cedar_value(req.arguments, "arguments"),
            "tenant": req.principal.tenant,
            "user": req.principal.user or "",
            "has_user": req.principal.user is not None,
            "run": {"untrusted_input": run_flags.untrusted_input, "sensitive_data": run_flags.sensitive_data,
                    "state_changing": run_flags.state_changing},
            "tool": _traits_record(req.traits),
            "facts": to_cedar_value(req.context, "context"),
        }
        request = {"principal": _uid("Agent", req.principal.agent), "action": CALL_ACTION,
                   "resource": _uid("Tool", req.tool), "context": context}
        return request, self._entities_for(req.principal, req.tool, req.traits)

    def _entities_for(self, principal: Principal, tool: str, traits: ToolTraits) -> cedarpy.Entities:
        # Unknown agents and tools get a bare entity so policies can still test their attributes;
        # declared ones keep their group membership from the shipped/supplied entities.
        delta: list[dict[str, Any]] = []
        if ("Agent", principal.agent) not in self._known:
            delta.append({"uid": _uid("Agent", principal.agent), "attrs": {},
                          "parents": [_uid("Role", r) for r in principal.roles]})
        if ("Tool", tool) not in self._known:
            delta.append({"uid": _uid("Tool", tool), "attrs": _traits_record(traits), "parents": []})
        if not delta:
            return self._entities
        try:
            return self._entities.with_added_json_str(json.dumps(delta))
        except ValueError as e:
            raise UserError(f"agent {principal.agent!r} or tool {tool!r} is not a valid Cedar id: {e}") from None

    # -- decisions ----------------------------------------------------------------------------------------------

    def decide(self, req: ToolCallRequest, run_flags: RunFlags, *, approved: bool = False) -> Decision:
        """allow / deny / approval_required for one call. `approved=True` once a human approved this call:
        approval gates are then satisfied, hard denies still hold."""
        req = dataclasses.replace(req, traits=self.traits_of(req.tool, req.traits))
        try:
            request, entities = self._request(req, run_flags)
        except UserError as e:
            return Decision("deny", (f"arguments unreadable by policy: {e.message}",), ())
        hard = cedarpy.is_authorized(request, self._hard, entities)
        if hard.diagnostics.errors:
            return Decision("deny", self._errors(hard.diagnostics.errors),
                            self._ids(hard.diagnostics.reasons))
        if not hard.allowed:
            ids = self._ids(hard.diagnostics.reasons)
            why = (f"forbidden by {', '.join(ids)}" if ids
                   else f"no policy permits {req.principal.agent} to call {req.tool}")
            return Decision("deny", (why,), ids)
        permit_ids = self._ids(hard.diagnostics.reasons)
        gates = self._approval_gates(request, entities, req, run_flags)
        if isinstance(gates, Decision):
            return gates
        if gates and not approved:
            return Decision("approval_required", tuple(r for r, _ in gates), tuple(i for _, i in gates if i))
        reasons = ("approved by a human",) if gates else ("permitted",)
        return Decision("allow", reasons, permit_ids)

    def _approval_gates(
        self, request: dict[str, Any], entities: cedarpy.Entities, req: ToolCallRequest, run_flags: RunFlags
    ) -> list[tuple[str, str]] | Decision:
        gates: list[tuple[str, str]] = []
        full = cedarpy.is_authorized(request, self._all, entities)
        if full.diagnostics.errors:
            return Decision("deny", self._errors(full.diagnostics.errors), ())
        if not full.allowed:
            for pid in full.diagnostics.reasons:
                ann = self._annotations.get(pid, {})
                gates.append((f"approval: {ann.get('approval') or 'policy requires it'}", ann.get("id", pid)))
        if req.traits.requires_approval:
            gates.append((f"tool {req.tool} requires approval for every call", ""))
        if run_flags.rule_of_two_applies(req.traits):
            gates.append(("rule of two: this run has untrusted input and sensitive data, and this tool changes state",
                          ""))
        return gates

    def _errors(self, errors: Iterable[str]) -> tuple[str, ...]:
        def name(m: re.Match[str]) -> str:
            return f"`{self._annotations.get(m.group(1), {}).get('id', m.group(1))}`"
        return tuple("policy error (fails closed): " + re.sub(r"`(policy\d+)`", name, e) for e in errors)

    def _ids(self, pids: Iterable[str]) -> tuple[str, ...]:
        return tuple(self._annotations.get(p, {}).get("id", p) for p in pids)

    def visible_tools(
        self,
        principal: Principal,
        tools: Sequence[str],
        traits: Mapping[str, ToolTraits] | None = None,
        facts: Mapping[str, Any] | None = None,
        run_flags: RunFlags | None = None,
    ) -> list[str]:
        """The tools to show the model: those the policy permits for this principal before arguments are known.

        Evaluated with empty arguments: policies that read arguments error and Cedar skips them, so a tool is
        shown when some argument-free permit matches and no argument-free forbid does. `decide` still checks
        every call with its real arguments."""
        shown = []
        for tool in tools:
            t = self.traits_of(tool, (traits or {}).get(tool, ToolTraits()))
            probe = ToolCallRequest(principal, tool, {}, "visibility", "visibility", t, dict(facts or {}))
            try:
                request, entities = self._request(probe, run_flags or RunFlags())
            except UserError:
                continue  # fail closed: a tool we cannot evaluate is not shown
            if cedarpy.is_authorized(request, self._hard, entities).allowed:
                shown.append(tool)
        return shown
