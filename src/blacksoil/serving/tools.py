"""Tool calls and structured output on models whose chat template knows no tools.

Tool specs go into the system prompt, the output is constrained by a JSON schema, and the JSON is parsed back.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from typing import Any

import jsonschema

from blacksoil.errors import UserError

# A bounded answer: a small model that starts repeating itself inside the string would otherwise run to
# max_tokens on every call.
ANSWER_MAX_CHARS = 400
_ANSWER = {"type": "object", "properties": {"answer": {"type": "string", "maxLength": ANSWER_MAX_CHARS}},
           "required": ["answer"]}


@dataclass
class ToolPlan:
    """How one request's tools / response_format are turned into an engine request and back."""

    mode: str
    """'plain' (no constraint), 'json' (response_format), 'tools' (tool calls possible)."""
    names: tuple[str, ...] = ()
    """Tools the model may call."""
    allow_answer: bool = True
    """Whether a plain answer is allowed (tool_choice auto) besides tool calls."""


def with_required(schema: dict[str, Any]) -> dict[str, Any]:
    """Copy of `schema` where objects without `required` require every property that has no default.

    A grammar without `required` lets the small model emit `{ }` (measured, see docs/design.md).
    """
    out = dict(schema)
    props = out.get("properties")
    if isinstance(props, dict):
        out["properties"] = {k: with_required(v) if isinstance(v, dict) else v for k, v in props.items()}
        if "required" not in out:
            out["required"] = [k for k, v in props.items() if not (isinstance(v, dict) and "default" in v)]
    if isinstance(out.get("items"), dict):
        out["items"] = with_required(out["items"])
    return out


def _check_schema(schema: Any, param: str) -> dict[str, Any]:
    if not isinstance(schema, dict):
        raise UserError(f"{param} must be a JSON schema object, got {type(schema).__name__}", param=param)
    try:
        jsonschema.Draft202012Validator.check_schema(schema)
    except jsonschema.SchemaError as e:
        where = "/".join(str(p) for p in e.absolute_path) or "(root)"
        raise UserError(f"{param} is not a valid JSON schema at {where}: {e.message}; fix the schema",
                        param=param) from None
    return schema


def _tool_specs(tools: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    specs: dict[str, dict[str, Any]] = {}
    for i, t in enumerate(tools):
        fn = t.get("function") if isinstance(t, dict) else None
        if not isinstance(t, dict) or t.get("type", "function") != "function" or not isinstance(fn, dict):
            raise UserError(f"tools[{i}] must be {{'type': 'function', 'function': {{...}}}}", param=f"tools[{i}]")
        name = fn.get("name")
        if not isinstance(name, str) or not name or len(name) > 64:
            raise UserError(f"tools[{i}].function.name must be a non-empty string, got {name!r}",
                            param=f"tools[{i}].function.name")
        params = _check_schema(fn.get("parameters", {"type": "object", "properties": {}}),
                               f"tools[{i}].function.parameters")
        if params.get("type", "object") != "object":
            raise UserError(f"tools[{i}].function.parameters must have type 'object', got {params.get('type')!r}",
                            param=f"tools[{i}].function.parameters")
        specs[name] = {"name": name, "description": fn.get("description", ""), "parameters": params}
    return specs


def _call_schema(spec: dict[str, Any]) -> dict[str, Any]:
    return {"type": "object", "properties": {"name": {"const": spec["name"]},
                                             "arguments": with_required(spec["parameters"])},
            "required": ["name", "arguments"]}


def plan_request(body: dict[str, Any]) -> tuple[ToolPlan, dict[str, Any]]:
    """Validate tools / tool_choice / response_format and build the engine request body."""
    body = dict(body)
    tools = body.pop("tools", None)
    choice = body.pop("tool_choice", None)
    body.pop("parallel_tool_calls", None)
    fmt = body.get("response_format")
    if tools:
        if not isinstance(tools, list):
            raise UserError("tools must be a list of function specs", param="tools")
        specs = _tool_specs(tools)
        names, allow_answer = _choose(specs, choice)
        if names:
            body.pop("response_format", None)
            schema: dict[str, Any] = {"anyOf": [_call_schema(specs[n]) for n in names] + ([_ANSWER] if allow_answer
                                                                                         else [])}
            body["messages"] = [_system(specs, names, allow_answer), *_flatten(body["messages"])]
            body["response_format"] = {"type": "json_schema", "json_schema": {"name": "tool_call", "schema": schema}}
            return ToolPlan("tools", tuple(names), allow_answer), body
    body["messages"] = _flatten(body["messages"])
    if fmt is not None:
        return ToolPlan("json"), body | {"response_format": _response_format(fmt)}
    return ToolPlan("plain"), body


def _choose(specs: dict[str, dict[str, Any]], choice: Any) -> tuple[list[str], bool]:
    if choice is None or choice == "auto":
        return list(specs), True
    if choice == "none":
        return [], True
    if choice == "required":
        return list(specs), False
    if isinstance(choice, dict) and isinstance(choice.get("function"), dict):
        name = choice["function"].get("name")
        if name not in specs:
            raise UserError(f"tool_choice names {name!r}, which is not in tools ({', '.join(specs)})",
                            param="tool_choice")
        return [name], False
    raise UserError(f"tool_choice {choice!r} is invalid; use 'auto', 'none', 'required' or "
                    "{'type': 'function', 'function': {'name': ...}}", param="tool_choice")


def _response_format(fmt: Any) -> dict[str, Any]:
    kind = fmt.get("type") if isinstance(fmt, dict) else None
    if kind in ("text", "json_object"):
        return dict(fmt)
    if kind == "json_schema":
        js = fmt.get("json_schema")
        if not isinstance(js, dict) or "schema" not in js:
            raise UserError("response_format.json_schema must be {'name': ..., 'schema': {...}}",
                            param="response_format.json_schema")
        schema = with_required(_check_schema(js["schema"], "response_format.json_schema.schema"))
        return {"type": "json_schema", "json_schema": {**js, "schema": schema}}
    raise UserError(f"response_format type {kind!r} is invalid; use 'text', 'json_object' or 'json_schema'",
                    param="response_format")


def _system(specs: dict[str, dict[str, Any]], names: list[str], allow_answer: bool) -> dict[str, Any]:
    # Signatures, not JSON schemas: the grammar already enforces the schema, and every prompt token costs
    # ~6 ms of prefill on a 2-core CPU and is trained over again by the learner (a JSON spec is ~3x longer).
    lines = ["Tools:"] + [signature(specs[n]) for n in names]
    reply = 'Reply with JSON only. Call a tool: {"name": "<tool>", "arguments": {...}}.'
    if allow_answer:
        reply += ' Answer: {"answer": "<your answer>"}.'
    lines.append(reply)
    return {"role": "system", "content": "\n".join(lines)}


def _type_hint(schema: dict[str, Any]) -> str:
    if "enum" in schema:
        return "|".join(str(v) for v in schema["enum"])
    if schema.get("type") == "array" and isinstance(schema.get("items"), dict):
        return f"list of {_type_hint(schema['items'])}"
    kind = schema.get("type")
    return kind if isinstance(kind, str) else "any"


def signature(spec: dict[str, Any]) -> str:
    """One line per tool: `name(arg: type, opt?: type = default) - description; arg: what it is`."""
    params = spec.get("parameters") or {}
    props: dict[str, Any] = params.get("properties") or {}
    required = set(params.get("required", [k for k, v in props.items() if "default" not in v]))
    args, notes = [], []
    for k, v in props.items():
        v = v if isinstance(v, dict) else {}
        opt = "" if k in required else "?"
        default = f" = {json.dumps(v['default'])}" if "default" in v else ""
        args.append(f"{k}{opt}: {_type_hint(v)}{default}")
        desc = v.get("description")
        # Enum descriptions usually just repeat the values; free-form arguments need the hint.
        if desc and "enum" not in v and not (v.get("type") == "array" and "enum" in v.get("items", {})):
            notes.append(f"{k}: {desc}")
    line = f"- {spec['name']}({', '.join(args)})"
    if spec.get("description"):
        line += f" - {spec['description']}"
    if notes:
        line += " (" + "; ".join(notes) + ")"
    return line


def _flatten(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rewrite tool-call turns as plain sentences the template can render (it knows no tool roles).

    Sentences rather than raw JSON: a small model shown JSON turns tends to answer with more JSON.
    """
    out: list[dict[str, Any]] = []
    names: dict[str, str] = {}
    for m in messages:
        role = m.get("role")
        if role == "assistant" and m.get("tool_calls"):
            said = []
            for c in m["tool_calls"]:
                names[c.get("id", "")] = c["function"]["name"]
                args = json.dumps(_loads(c["function"].get("arguments", "{}")))
                said.append(f"I call the tool {c['function']['name']} with arguments {args}.")
            out.append({"role": "assistant", "content": ((m.get("content") or "") + " " + " ".join(said)).strip()})
        elif role == "tool":
            name = m.get("name") or names.get(m.get("tool_call_id", ""), "the tool")
            out.append({"role": "user", "content": f"The tool {name} returned: {_text(m.get('content'))}"})
        elif isinstance(m.get("content"), list):
            out.append({**m, "content": _text(m["content"])})
        else:
            out.append(m)
    return out


def _text(content: Any) -> str:
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, dict))
    return "" if content is None else str(content)


def _loads(s: Any) -> Any:
    try:
        return json.loads(s) if isinstance(s, str) else s
    except json.JSONDecodeError:
        return s


def parse_output(plan: ToolPlan, content: str, finish_reason: str | None) -> tuple[dict[str, Any], str | None]:
    """Turn the engine's text into an OpenAI assistant message and finish_reason."""
    if plan.mode != "tools":
        return {"role": "assistant", "content": content}, finish_reason
    try:
        data = json.loads(content)
    except json.JSONDecodeError:
        # Truncated by max_tokens: hand back the raw text rather than invent a call.
        return {"role": "assistant", "content": content}, finish_reason or "length"
    if isinstance(data, dict) and data.get("name") in plan.names and isinstance(data.get("arguments"), dict):
        call = {"id": "call_" + uuid.uuid4().hex[:24], "type": "function",
                "function": {"name": data["name"], "arguments": json.dumps(data["arguments"])}}
        return {"role": "assistant", "content": None, "tool_calls": [call]}, "tool_calls"
    if isinstance(data, dict) and isinstance(data.get("answer"), str):
        return {"role": "assistant", "content": data["answer"]}, finish_reason
    return {"role": "assistant", "content": content}, finish_reason
