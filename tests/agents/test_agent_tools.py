"""Typed Python functions become JSON-schema tools: schema, required list, flags, validation, tool sets."""

from __future__ import annotations

from typing import Literal

import pytest

from blacksoil.agents.tools import ToolContext, ToolRegistry, function_tool, load_toolset, open_toolset, tool
from blacksoil.errors import ConfigError, NotFoundError, UserError

CTX = ToolContext(run_id="r1", call_id="s1c0", idempotency_key="r1:s1c0", agent="a")


def set_speed(machine_id: str, rpm: int, mode: Literal["eco", "fast"] = "eco", note: str | None = None) -> dict:
    """Set a machine's spindle speed.

    Args:
        machine_id: Machine id such as M3.
        rpm: Target speed in revolutions per minute.
        mode: Drive mode.
    """
    return {"machine_id": machine_id, "rpm": rpm, "mode": mode}


def test_schema_from_type_hints_and_docstring() -> None:
    t = function_tool(set_speed)
    assert t.name == "set_speed"
    assert t.description == "Set a machine's spindle speed."
    p = t.parameters
    assert p["required"] == ["machine_id", "rpm"]  # parameters without defaults are required
    assert p["properties"]["rpm"] == {"type": "integer", "description": "Target speed in revolutions per minute."}
    assert p["properties"]["mode"]["enum"] == ["eco", "fast"]
    assert p["additionalProperties"] is False
    assert t.openai_spec()["function"]["parameters"] is p


def test_arguments_are_validated_and_coerced() -> None:
    t = function_tool(set_speed)
    assert t.invoke({"machine_id": "M3", "rpm": "1200"}, CTX)["rpm"] == 1200
    with pytest.raises(UserError, match="rpm"):
        t.invoke({"machine_id": "M3", "rpm": "fast"}, CTX)
    with pytest.raises(UserError, match="unknown argument"):
        t.invoke({"machine_id": "M3", "rpm": 1, "force": True}, CTX)
    with pytest.raises(UserError, match="mode"):
        t.invoke({"machine_id": "M3", "rpm": 1, "mode": "turbo"}, CTX)


def test_flags_from_decorator_and_overrides() -> None:
    @tool(state_changing=True, requires_approval=True)
    def order(part: str) -> str:
        """Order a part."""
        return part

    assert function_tool(order).flags.state_changing and function_tool(order).flags.requires_approval
    assert function_tool(order, sandboxed=True).flags.sandboxed
    assert not function_tool(set_speed).flags.state_changing


def test_idempotency_key_is_hidden_from_the_model_and_passed_by_the_runtime() -> None:
    def pay(amount: int, idempotency_key: str) -> str:
        """Pay once."""
        return idempotency_key

    t = function_tool(pay)
    assert "idempotency_key" not in t.parameters["properties"]
    assert t.parameters["required"] == ["amount"]
    assert t.reentrant
    assert t.invoke({"amount": 3}, CTX) == "r1:s1c0"


def test_untyped_parameter_is_a_config_error() -> None:
    def bad(x):  # type: ignore[no-untyped-def]
        return x

    with pytest.raises(ConfigError, match="'x' has no type hint"):
        function_tool(bad)


def test_tool_sets_by_module_and_function() -> None:
    names = [t.name for t in load_toolset("agent_test_tools")]
    assert "record_entry" in names and "lookup_price" in names
    assert [t.name for t in load_toolset("agent_test_tools:lookup_price")] == ["lookup_price"]
    with pytest.raises(NotFoundError, match="no_such_module"):
        load_toolset("no_such_module")
    with pytest.raises(NotFoundError, match="nope"):
        load_toolset("agent_test_tools:nope")
    with pytest.raises(ConfigError, match="takes no options"):
        open_toolset("agent_test_tools", {"seed": 1})


def test_registry_rejects_duplicate_names() -> None:
    reg = ToolRegistry([function_tool(set_speed)])
    with pytest.raises(ConfigError, match="two tools are named 'set_speed'"):
        reg.add(function_tool(set_speed))
