"""Typed Python functions as agent tools: a JSON schema derived from the type hints, checked calls.

Any runtime (AgentScore's loop, the agents pillar) can wrap a `ToolSpec`: name, description, schema, call.
"""

from __future__ import annotations

import inspect
import json
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, Union

from blacksoil.errors import NotFoundError, UserError

__all__ = ["ToolSpec", "bind", "existing", "to_json", "tool"]

_SIMPLE: dict[Any, str] = {int: "integer", float: "number", str: "string", bool: "boolean"}


def _schema_of(tp: Any) -> tuple[dict[str, Any], bool]:
    """JSON schema of one annotation, and whether it admits None."""
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) != 1:
            raise TypeError(f"unions other than X | None are not supported: {tp}")
        return _schema_of(args[0])[0], True
    if origin is Literal:
        values = list(typing.get_args(tp))
        return {"type": _SIMPLE[type(values[0])], "enum": values}, False
    if origin is list:
        (item,) = typing.get_args(tp) or (Any,)
        return {"type": "array", "items": _schema_of(item)[0] if item is not Any else {}}, False
    if origin is dict or tp is dict:
        return {"type": "object"}, False
    if tp in _SIMPLE:
        return {"type": _SIMPLE[tp]}, False
    if tp is Any:
        return {}, False
    raise TypeError(f"unsupported tool parameter type {tp}")


def _doc_parts(fn: Callable[..., Any]) -> tuple[str, dict[str, str]]:
    """The summary line(s) and the `Args:` descriptions of a docstring."""
    doc = inspect.getdoc(fn) or ""
    summary, _, rest = doc.partition("\nArgs:")
    args: dict[str, str] = {}
    for line in rest.splitlines():
        name, sep, desc = line.strip().partition(":")
        if sep and name.isidentifier():
            args[name] = desc.strip()
    return " ".join(summary.split()), args


def _matches(value: Any, schema: dict[str, Any]) -> bool:
    t = schema.get("type")
    if "enum" in schema and value not in schema["enum"]:
        return False
    if t == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if t == "number":
        return isinstance(value, int | float) and not isinstance(value, bool)
    if t == "string":
        return isinstance(value, str)
    if t == "boolean":
        return isinstance(value, bool)
    if t == "array":
        return isinstance(value, list) and all(_matches(v, schema.get("items", {})) for v in value)
    if t == "object":
        return isinstance(value, dict)
    return True


@dataclass(frozen=True)
class ToolSpec:
    """One tool: what the model sees (name, description, JSON schema) and the checked call."""

    name: str
    description: str
    parameters: dict[str, Any]
    fn: Callable[..., Any]
    nullable: frozenset[str] = frozenset()
    """Parameters that accept null (typed `X | None`); kept out of the schema for grammar converters."""

    def openai(self) -> dict[str, Any]:
        """The tool in OpenAI `tools=[...]` form."""
        return {"type": "function", "function": {"name": self.name, "description": self.description,
                                                 "parameters": self.parameters}}

    def check(self, args: dict[str, Any]) -> None:
        """Raise UserError naming the argument when `args` do not fit the schema."""
        if not isinstance(args, dict):
            raise UserError(f"{self.name}: arguments must be a JSON object; got {args!r:.80}")
        props: dict[str, Any] = self.parameters["properties"]
        for key in args:
            if key not in props:
                raise UserError(f"{self.name}: unknown argument {key!r}; allowed: {', '.join(props) or 'none'}",
                                param=key)
        for key in self.parameters.get("required", []):
            if key not in args:
                raise UserError(f"{self.name}: missing required argument {key!r} ({props[key].get('description', '')})",
                                param=key)
        for key, value in args.items():
            schema = props[key]
            if value is None and key in self.nullable:
                continue
            if not _matches(value, schema):
                want = schema.get("enum") or schema.get("type")
                raise UserError(f"{self.name}: argument {key!r}={value!r:.60} is invalid; expected {want}", param=key)

    def call(self, args: dict[str, Any]) -> Any:
        """Validate and run; results are JSON-serialisable."""
        self.check(args)
        return self.fn(**args)


def tool(fn: Callable[..., Any], *, skip_first: bool = False) -> ToolSpec:
    """Derive a ToolSpec from a typed function (skip_first: the first parameter is the context, e.g. the plant)."""
    hints = typing.get_type_hints(fn)
    params = list(inspect.signature(fn).parameters.values())
    if skip_first:
        params = params[1:]
    summary, arg_docs = _doc_parts(fn)
    props: dict[str, Any] = {}
    required: list[str] = []
    nullable: set[str] = set()
    for p in params:
        schema, is_nullable = _schema_of(hints[p.name])
        if is_nullable:
            nullable.add(p.name)
        if p.name in arg_docs:
            schema["description"] = arg_docs[p.name]
        if p.default is inspect.Parameter.empty:
            required.append(p.name)
        elif p.default is not None:
            schema["default"] = p.default
        props[p.name] = schema
    parameters: dict[str, Any] = {"type": "object", "properties": props, "required": required}
    return ToolSpec(fn.__name__, summary, parameters, fn, frozenset(nullable))


def bind(fn: Callable[..., Any], context: Any) -> ToolSpec:
    """A ToolSpec whose calls pass `context` (the plant, the workspace) as the first argument."""
    spec = tool(fn, skip_first=True)

    def bound(**kwargs: Any) -> Any:
        return fn(context, **kwargs)

    return ToolSpec(spec.name, spec.description, spec.parameters, bound, spec.nullable)


def to_json(value: Any) -> str:
    """A tool result as the text the model reads."""
    return json.dumps(value, sort_keys=True, default=str)


def existing(items: dict[str, Any], key: str, what: str) -> dict[str, Any]:
    """The record `key` of a keyed collection, or NotFoundError listing the ids that exist (tools take only ids
    that exist, and a wrong one tells the agent which are right)."""
    if key not in items:
        raise NotFoundError(f"{what} {key!r} does not exist; known: {', '.join(sorted(items)) or 'none'}")
    rec: dict[str, Any] = items[key]
    return rec
