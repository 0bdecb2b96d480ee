"""Tool-call planning and parsing as pure logic (the engine path is covered in test_gateway.py)."""

from __future__ import annotations

import json

import pytest

from blacksoil.errors import UserError
from blacksoil.serving.tools import ToolPlan, parse_output, plan_request, with_required

TOOL = {"type": "function", "function": {"name": "add", "parameters": {
    "type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "integer", "default": 0}}}}}


def _body(**kw: object) -> dict[str, object]:
    return {"messages": [{"role": "user", "content": "hi"}], **kw}


def test_parameters_without_default_become_required() -> None:
    assert with_required(TOOL["function"]["parameters"])["required"] == ["a"]  # type: ignore[index]
    explicit = {"type": "object", "properties": {"a": {}}, "required": []}
    assert with_required(explicit)["required"] == []


def test_tool_choice_modes_shape_the_schema() -> None:
    """With parallel_tool_calls false (the parallel shapes are in test_tool_calls_parallel.py)."""
    plan, body = plan_request(_body(tools=[TOOL], tool_choice="auto", parallel_tool_calls=False))
    schema = body["response_format"]["json_schema"]["schema"]  # type: ignore[index]
    assert plan.allow_answer and len(schema["anyOf"]) == 2
    assert schema["anyOf"][0]["properties"]["arguments"]["required"] == ["a"]
    plan, body = plan_request(_body(tools=[TOOL], tool_choice="required", parallel_tool_calls=False))
    assert not plan.allow_answer and len(body["response_format"]["json_schema"]["schema"]["anyOf"]) == 1  # type: ignore[index]
    plan, body = plan_request(_body(tools=[TOOL], tool_choice={"type": "function", "function": {"name": "add"}}))
    assert plan.names == ("add",)
    plan, body = plan_request(_body(tools=[TOOL], tool_choice="none"))
    assert plan.mode == "plain" and "response_format" not in body
    assert body["messages"][0]["role"] == "user"  # type: ignore[index]


@pytest.mark.parametrize(("kw", "param"), [
    ({"tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "bogus"}}}]},
     "tools[0].function.parameters"),
    ({"tools": [{"type": "function", "function": {"parameters": {}}}]}, "tools[0].function.name"),
    ({"tools": [{"type": "retrieval"}]}, "tools[0]"),
    ({"tools": [TOOL], "tool_choice": {"type": "function", "function": {"name": "nope"}}}, "tool_choice"),
    ({"tools": [TOOL], "tool_choice": "sometimes"}, "tool_choice"),
    ({"response_format": {"type": "xml"}}, "response_format"),
    ({"response_format": {"type": "json_schema", "json_schema": {"schema": {"type": 3}}}},
     "response_format.json_schema.schema"),
])
def test_bad_tools_name_the_field(kw: dict[str, object], param: str) -> None:
    with pytest.raises(UserError) as e:
        plan_request(_body(**kw))
    assert e.value.param == param


def test_parse_output() -> None:
    plan = ToolPlan("tools", ("add",), True)
    msg, finish = parse_output(plan, json.dumps({"name": "add", "arguments": {"a": 1}}), "stop")
    assert finish == "tool_calls" and json.loads(msg["tool_calls"][0]["function"]["arguments"]) == {"a": 1}
    msg, finish = parse_output(plan, '{"answer": "4"}', "stop")
    assert msg["content"] == "4" and finish == "stop"
    msg, finish = parse_output(plan, '{"name": "ad', None)
    assert finish == "length" and msg["content"] == '{"name": "ad'


def test_tool_turns_are_flattened_for_a_template_without_tools() -> None:
    history = [{"role": "user", "content": "add 1 and 2"},
               {"role": "assistant", "content": None, "tool_calls": [
                   {"id": "c1", "type": "function", "function": {"name": "add", "arguments": '{"a": 1}'}}]},
               {"role": "tool", "tool_call_id": "c1", "content": "3"}]
    _, body = plan_request({"messages": history, "tools": [TOOL]})
    roles = [m["role"] for m in body["messages"]]  # type: ignore[index]
    assert roles == ["system", "user", "assistant", "user"]
    assert "add" in body["messages"][2]["content"] and "add" in body["messages"][3]["content"]  # type: ignore[index]


def test_tools_are_listed_as_compact_signatures() -> None:
    """One line per tool: names, types, enums, defaults and free-form hints; never the JSON schema itself."""
    from blacksoil.serving.tools import ANSWER_MAX_CHARS, signature

    spec = {"name": "book", "description": "Book a room.", "parameters": {"type": "object", "properties": {
        "room": {"type": "string", "enum": ["R1", "R2"], "description": "R1 or R2"},
        "note": {"type": "string", "description": "why"},
        "ids": {"type": "array", "items": {"type": "string", "enum": ["J1", "J2"]}},
        "hours": {"type": "number", "default": 1.0}}, "required": ["room", "note", "ids"]}}
    assert signature(spec) == ('- book(room: R1|R2, note: string, ids: list of J1|J2, hours?: number = 1.0)'
                               ' - Book a room. (note: why)')
    _, body = plan_request({"messages": [{"role": "user", "content": "hi"}], "tools": [
        {"type": "function", "function": spec}]})
    system = body["messages"][0]["content"]  # type: ignore[index]
    assert system.startswith("Tools:\n- book(") and '"properties"' not in system
    assert '"answer": "<your answer>"' in system
    schema = body["response_format"]["json_schema"]["schema"]  # type: ignore[index]
    answer = next(s for s in schema["anyOf"] if "answer" in s["properties"])
    assert answer["properties"]["answer"]["maxLength"] == ANSWER_MAX_CHARS
