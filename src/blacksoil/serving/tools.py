"""Tool calls and structured output on models whose chat template knows no tools.

Tool specs go into the system prompt, the output is constrained by a JSON schema, and the JSON is parsed back.
With `parallel_tool_calls` (the default, as in OpenAI's API) the grammar takes `{"tool_calls": [call, ...]}`, one
or more calls in one turn, each validated against its tool's schema; `false` keeps exactly one call. On a fresh
question under `auto` the list comes first and an answer follows an empty one; once tool results are in, the plain
`{"answer": ...}` is offered beside it (measured, docs/design.md). Under
`tool_choice: auto` a call identical to one whose result is already in the conversation is never handed back:
agent frameworks re-send such a call forever (measured: 45 identical calls for one question), so the gateway
drops it and, when nothing else is left, asks the engine for the answer instead (gateway.py).
"""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass
from typing import Any

import jsonschema

from blacksoil.errors import UserError

# A bounded answer: a small model that starts repeating itself inside the string would otherwise run to
# max_tokens on every call.
ANSWER_MAX_CHARS = 400
_ANSWER_TEXT: dict[str, Any] = {"type": "string", "maxLength": ANSWER_MAX_CHARS}
_ANSWER: dict[str, Any] = {"type": "object", "properties": {"answer": _ANSWER_TEXT}, "required": ["answer"]}
PROMPT_FIELDS = ("tool_choice", "parallel_tool_calls", "response_format")
"""Request fields that change the prompt the engine sees (the plan's system message): the gateway keeps them with
each stored call, so the learner renders the same prompt again."""
PARALLEL_MAX_CALLS = 8
"""Most tool calls in one turn: a small model that starts repeating calls inside the array stops there."""


@dataclass
class ToolPlan:
    """How one request's tools / response_format are turned into an engine request and back."""

    mode: str
    """'plain' (no constraint), 'json' (response_format), 'tools' (tool calls possible)."""
    names: tuple[str, ...] = ()
    """Tools the model may call."""
    allow_answer: bool = True
    """Whether a plain answer is allowed (tool_choice auto) besides tool calls."""
    parallel: bool = True
    """Whether one turn may hold several calls (`parallel_tool_calls`)."""
    answered: frozenset[tuple[str, str]] = frozenset()
    """(name, canonical arguments) of the calls whose results are already in the conversation."""
    calls_first: bool = False
    """Auto, parallel, and no tool result since the last user message: the grammar opens with the call list and
    an answer comes after an empty one (`{"tool_calls": [], "answer": ...}`)."""

    @property
    def drops_repeats(self) -> bool:
        """Whether calls already answered are dropped (only where the model may answer instead: auto)."""
        return self.mode == "tools" and self.allow_answer and bool(self.answered)


@dataclass
class Parsed:
    """The engine's text as an OpenAI assistant message."""

    message: dict[str, Any]
    finish_reason: str | None
    repeats_only: bool = False
    """Every call the model made was already answered in the conversation: the answer must be asked for."""


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
    parallel = body.pop("parallel_tool_calls", None) is not False
    fmt = body.get("response_format")
    if tools:
        if not isinstance(tools, list):
            raise UserError("tools must be a list of function specs", param="tools")
        specs = _tool_specs(tools)
        names, allow_answer = _choose(specs, choice)
        if names:
            body.pop("response_format", None)
            plan = ToolPlan("tools", tuple(names), allow_answer, parallel, answered_calls(body["messages"]),
                            calls_first=parallel and allow_answer and not _has_results(body["messages"]))
            body["messages"] = [_system(specs, names, plan), *_flatten(body["messages"])]
            body["response_format"] = {"type": "json_schema",
                                       "json_schema": {"name": "tool_call", "schema": _schema(specs, plan)}}
            return plan, body
    body["messages"] = _flatten(body["messages"])
    if fmt is not None:
        return ToolPlan("json"), body | {"response_format": _response_format(fmt)}
    return ToolPlan("plain"), body


def _schema(specs: dict[str, dict[str, Any]], plan: ToolPlan) -> dict[str, Any]:
    calls = [_call_schema(specs[n]) for n in plan.names]
    answer = [_ANSWER] if plan.allow_answer else []
    if not plan.parallel:
        return {"anyOf": [*calls, *answer]}
    many = {"type": "object", "required": ["tool_calls"], "properties": {"tool_calls": {
        "type": "array", "items": {"anyOf": calls}, "minItems": 1, "maxItems": PARALLEL_MAX_CALLS}}}
    if plan.calls_first:
        # Offered `{"answer"` beside `{"tool_calls"` on a fresh question, the default model answered from memory
        # 5 of 6 times with two tools; opening with the list it called 6 of 6 (docs/design.md). Once results
        # are in, the plain answer comes back: opened with the list it re-called instead of answering (3 of 3).
        answer = [{"type": "object", "required": ["tool_calls", "answer"], "properties": {
            "tool_calls": {"type": "array", "maxItems": 0}, "answer": _ANSWER_TEXT}}]
    # The one-call object stays valid: demonstrations (learning/demos.py) and adapters trained on them use it.
    return {"anyOf": [many, *calls, *answer]}


def _has_results(messages: list[dict[str, Any]]) -> bool:
    """Whether a tool result came after the last user message (the agent is past its first step)."""
    for m in reversed(messages):
        if m.get("role") == "tool":
            return True
        if m.get("role") == "user":
            return False
    return False


def answer_body(body: dict[str, Any]) -> dict[str, Any]:
    """The same engine request, constrained to an answer: asked when the model only repeated answered calls.

    Same messages (the engine reuses the cached prompt), only the grammar differs.
    """
    schema = {"type": "json_schema", "json_schema": {"name": "answer", "schema": _ANSWER}}
    return body | {"response_format": schema}


def canonical_arguments(arguments: Any) -> str:
    """Arguments as one comparable string (key order and spacing do not make a call new)."""
    return json.dumps(_loads(arguments), sort_keys=True, separators=(",", ":"))


def answered_calls(messages: list[dict[str, Any]]) -> frozenset[tuple[str, str]]:
    """(name, canonical arguments) of every assistant tool call that a `tool` message answered."""
    made: dict[str, tuple[str, str]] = {}
    done: set[tuple[str, str]] = set()
    for m in messages:
        if m.get("role") == "assistant":
            for c in m.get("tool_calls") or []:
                fn = c.get("function") or {}
                made[c.get("id") or ""] = (fn.get("name", ""), canonical_arguments(fn.get("arguments", "{}")))
        elif m.get("role") == "tool" and m.get("tool_call_id") in made:
            done.add(made[m["tool_call_id"]])
    return frozenset(done)


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


def _system(specs: dict[str, dict[str, Any]], names: list[str], plan: ToolPlan) -> dict[str, Any]:
    # Signatures, not JSON schemas: the grammar already enforces the schema, and every prompt token costs
    # ~6 ms of prefill on a 2-core CPU and is trained over again by the learner (a JSON spec is ~3x longer).
    lines = ["Tools:"] + [signature(specs[n]) for n in names]
    if plan.calls_first:
        reply = ('Reply with JSON only: {"tool_calls": [{"name": "<tool>", "arguments": {...}}, ...]} to call tools'
                 ' (one entry per call), or {"tool_calls": [], "answer": "<your answer>"} to answer.')
    elif plan.parallel:
        # Measured on the default model: asked this way it made every call of 10 two-city questions in one
        # turn; offered a bare JSON array it mostly answered in words instead (docs/design.md).
        reply = ('Reply with JSON only. Call tools: {"tool_calls": [{"name": "<tool>", "arguments": {...}}, ...]},'
                 ' one entry per call.')
    else:
        reply = 'Reply with JSON only. Call a tool: {"name": "<tool>", "arguments": {...}}.'
    if plan.allow_answer and not plan.calls_first:
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
    parsed = parse(plan, content, finish_reason)
    return parsed.message, parsed.finish_reason


_ANSWER_START = re.compile(r'\s*\{\s*"answer"\s*:\s*"')


def decoded_prefix(raw: str) -> str:
    """The characters of a JSON string body so far: up to its closing quote, before an unfinished escape."""
    end = 0
    while end < len(raw) and raw[end] != '"':
        end += 2 if raw[end] == "\\" else 1
    raw = raw[:min(end, len(raw))]
    for cut in range(len(raw), max(-1, len(raw) - 7), -1):
        try:
            return str(json.loads('"' + raw[:cut] + '"'))
        except json.JSONDecodeError:
            continue
    return ""


def _complete_calls(text: str) -> list[dict[str, Any]]:
    """The calls of a cut-off `{"tool_calls": [...` whose arguments are complete."""
    from blacksoil.serving.toolstream import scan  # toolstream builds on this module

    if not re.match(r'\s*\{\s*"tool_calls"', text):
        return []
    return [{"name": c.name, "arguments": json.loads(text[c.args_start:c.args_end])}
            for c in scan(text).calls.values()
            if c.name is not None and c.args_start is not None and c.args_end is not None]


def new_call_id() -> str:
    """An OpenAI-style tool call id."""
    return "call_" + uuid.uuid4().hex[:24]


def raw_calls(plan: ToolPlan, data: Any) -> list[tuple[str, Any]] | None:
    """(name, arguments) of the calls in parsed output, or None when it holds no calls."""
    items = data.get("tool_calls") if isinstance(data, dict) and "tool_calls" in data else [data]
    if not isinstance(items, list):
        return None
    calls = [(d["name"], d["arguments"]) for d in items if isinstance(d, dict) and d.get("name") in plan.names
             and isinstance(d.get("arguments"), dict)]
    return calls or None


class CallFilter:
    """Which calls of one turn are handed back: no repeat within the turn, none already answered (under auto)."""

    def __init__(self, plan: ToolPlan) -> None:
        self.plan = plan
        self.seen: set[tuple[str, str]] = set()
        self.dropped = 0

    def keep(self, name: str, arguments: Any) -> bool:
        key = (name, canonical_arguments(arguments))
        if key in self.seen or (self.plan.drops_repeats and key in self.plan.answered):
            self.dropped += 1
            return False
        self.seen.add(key)
        return True

    def may_repeat(self, name: str) -> bool:
        """Whether a call to `name` might be dropped once its arguments are known (so it cannot stream early)."""
        return any(n == name for n, _ in self.seen) or (self.plan.drops_repeats and
                                                        any(n == name for n, _ in self.plan.answered))


def parse(plan: ToolPlan, content: str, finish_reason: str | None) -> Parsed:
    """Turn the engine's text into an OpenAI assistant message, finish_reason and whether only repeats came."""
    if plan.mode != "tools":
        return Parsed({"role": "assistant", "content": content}, finish_reason)
    try:
        data = json.loads(content)
    except json.JSONDecodeError:
        done = _complete_calls(content)
        if not done:
            # Cut before any complete call: the answer so far (as a stream shows it), else the raw text.
            cut = _ANSWER_START.match(content)
            text = decoded_prefix(content[cut.end():]) if cut else content
            return Parsed({"role": "assistant", "content": text}, finish_reason or "length")
        # Cut by max_tokens inside a later call of the list: the complete calls are valid and handed back, the
        # cut one is dropped (the small model often appends a call nobody asked for).
        data = {"tool_calls": done}
    found = raw_calls(plan, data)
    if found:
        keep = CallFilter(plan)
        calls = [{"id": new_call_id(), "type": "function", "function": {"name": n, "arguments": json.dumps(a)}}
                 for n, a in found if keep.keep(n, a)]
        if not calls:
            return Parsed({"role": "assistant", "content": None}, finish_reason, repeats_only=True)
        return Parsed({"role": "assistant", "content": None, "tool_calls": calls}, "tool_calls")
    if isinstance(data, dict) and isinstance(data.get("answer"), str):
        return Parsed({"role": "assistant", "content": data["answer"]}, finish_reason)
    return Parsed({"role": "assistant", "content": content}, finish_reason)
