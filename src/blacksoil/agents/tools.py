"""Tools an agent can call: typed Python functions become JSON-schema tools with safety flags.

Parameters without defaults are required (the gateway's constrained decoding needs `required`, see docs/design.md).
"""

from __future__ import annotations

import importlib
import inspect
import json
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import ModuleType
from typing import Any, Protocol, runtime_checkable

from pydantic import TypeAdapter, ValidationError, validate_call

from blacksoil.errors import ConfigError, NotFoundError, UserError
from blacksoil.security.calls import ToolTraits as ToolFlags  # one definition of a tool's safety flags

#: Short names for tool sets a spec can name (class path of a Toolset); anything else is read as a module path.
TOOLSETS: dict[str, str] = {
    "manufacturing": "blacksoil.agents.manufacturing:PlantToolset",
    "sandbox": "blacksoil.agents.sandboxed:SandboxToolset",
    "agentscore_env": "blacksoil.agentscore.runtime_tools:EnvToolset",
    "memory": "blacksoil.agents.memory:MemoryToolset",
}
_TOOL_ATTR = "__blacksoil_tool__"
_MAX_RESULT_CHARS = 4000


@dataclass(frozen=True)
class ToolContext:
    """What a tool sees of the run that calls it."""

    run_id: str
    call_id: str
    idempotency_key: str
    agent: str


@dataclass(frozen=True)
class Tool:
    """One callable tool: its JSON schema for the model and how to invoke it."""

    name: str
    description: str
    parameters: dict[str, Any]
    flags: ToolFlags
    invoke: Callable[[dict[str, Any], ToolContext], Any] = field(compare=False, repr=False)
    """Calls the tool with validated arguments; returns any JSON-able value."""
    source: str = "python"
    """Where it comes from: `python:<module>.<function>` or `mcp:<server>`."""
    reentrant: bool = False
    """Safe to invoke again after a crash with the same idempotency key (the tool deduplicates itself)."""
    isolated: bool = False
    """Already runs inside the security sandbox (the `sandbox` tool set): the runtime calls it as it is."""
    function: Callable[..., Any] | None = field(default=None, compare=False, repr=False)
    """The Python function behind a python tool (the sandbox runs its source)."""

    def openai_spec(self) -> dict[str, Any]:
        """The `tools` entry of a chat completion request."""
        return {
            "type": "function",
            "function": {"name": self.name, "description": self.description, "parameters": self.parameters},
        }


def tool(
    fn: Callable[..., Any] | None = None,
    *,
    sandboxed: bool = False,
    requires_approval: bool = False,
    state_changing: bool = False,
    sensitive: bool = False,
    untrusted_output: bool = False,
) -> Any:
    """Decorator marking a function as a tool with flags; the function itself is unchanged."""
    flags = ToolFlags(sandboxed, requires_approval, state_changing, sensitive, untrusted_output)

    def mark(f: Callable[..., Any]) -> Callable[..., Any]:
        setattr(f, _TOOL_ATTR, flags)
        return f

    return mark(fn) if fn is not None else mark


def _doc_parts(fn: Callable[..., Any]) -> tuple[str, dict[str, str]]:
    """Summary and per-parameter descriptions from a Google-style (`Args:`) docstring."""
    doc = inspect.getdoc(fn) or ""
    summary = doc.split("\n\n")[0].strip().replace("\n", " ")
    params: dict[str, str] = {}
    m = re.search(r"^(?:Args|Arguments|Parameters):\s*\n((?:[ \t]+.*\n?)+)", doc, re.M)
    if m:
        for line in m.group(1).splitlines():
            pm = re.match(r"\s*(\w+)(?:\s*\([^)]*\))?:\s*(.+)", line)
            if pm:
                params[pm.group(1)] = pm.group(2).strip()
    return summary, params


def _schema(fn: Callable[..., Any], hidden: set[str]) -> dict[str, Any]:
    sig = inspect.signature(fn)
    for p in sig.parameters.values():
        if p.name not in hidden and p.annotation is inspect.Parameter.empty:
            raise ConfigError(f"tool {fn.__name__}: parameter {p.name!r} has no type hint; annotate it")
    try:
        schema = TypeAdapter(fn).json_schema()  # type: ignore[arg-type]
    except Exception as e:  # pydantic raises several types for unsupported hints
        raise ConfigError(f"tool {fn.__name__}: cannot build a JSON schema ({e}); use JSON-able type hints") from e
    _, descriptions = _doc_parts(fn)
    props = {k: v for k, v in schema.get("properties", {}).items() if k not in hidden}
    for name, prop in props.items():
        prop.pop("title", None)
        if name in descriptions:
            prop["description"] = descriptions[name]
    required = [p for p in schema.get("required", []) if p not in hidden]
    return {"type": "object", "properties": props, "required": required, "additionalProperties": False}


def function_tool(fn: Callable[..., Any], *, name: str | None = None, **flag_overrides: bool) -> Tool:
    """Turn a typed Python function into a Tool; flags come from @tool, then `flag_overrides`."""
    flags = replace(getattr(fn, _TOOL_ATTR, ToolFlags()), **flag_overrides)
    sig = inspect.signature(fn)
    # A tool that takes `idempotency_key` deduplicates its own side effects; the model never sees it.
    hidden = {"idempotency_key"} & set(sig.parameters)
    params = _schema(fn, hidden)
    summary, _ = _doc_parts(fn)
    validated = validate_call(fn)

    def invoke(arguments: dict[str, Any], ctx: ToolContext) -> Any:
        unknown = set(arguments) - set(params["properties"])
        if unknown:
            raise UserError(f"unknown argument(s) {sorted(unknown)}; allowed: {sorted(params['properties'])}")
        args = dict(arguments)
        if hidden:
            args["idempotency_key"] = ctx.idempotency_key
        try:
            return validated(**args)
        except ValidationError as e:
            raise UserError(f"bad arguments for {fn.__name__}: {_short(e)}") from None

    return Tool(
        name=name or fn.__name__,
        description=summary or fn.__name__.replace("_", " "),
        parameters=params,
        flags=flags,
        invoke=invoke,
        source=f"python:{fn.__module__}.{fn.__qualname__}",
        reentrant=bool(hidden),
        function=fn,
    )


def _short(e: ValidationError) -> str:
    return "; ".join(f"{'.'.join(str(x) for x in err['loc'])}: {err['msg']}" for err in e.errors())


def result_text(value: Any) -> str:
    """A tool result as the text the model reads (JSON where possible), capped in length."""
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    if len(text) > _MAX_RESULT_CHARS:
        text = text[:_MAX_RESULT_CHARS] + f"... [truncated {len(text) - _MAX_RESULT_CHARS} chars]"
    return text


def _module_functions(mod: ModuleType) -> list[Callable[..., Any]]:
    if hasattr(mod, "TOOLS"):
        return list(mod.TOOLS)
    names = getattr(mod, "__all__", None) or [n for n in dir(mod) if not n.startswith("_")]
    return [f for n in names if inspect.isfunction(f := getattr(mod, n, None)) and f.__module__ == mod.__name__]


@runtime_checkable
class Toolset(Protocol):
    """A named group of tools plus the world facts its policies read (e.g. zones under maintenance)."""

    def tools(self) -> list[Tool]: ...

    def facts(self, run_id: str) -> dict[str, Any]: ...


class ModuleToolset:
    """Typed functions of a module (its TOOLS list or public functions), or one `module:function`."""

    def __init__(self, ref: str) -> None:
        module_name, _, attr = ref.partition(":")
        try:
            mod = importlib.import_module(module_name)
        except ImportError as e:
            known = ", ".join(sorted(TOOLSETS))
            raise NotFoundError(
                f"tool set {ref!r} not found ({e}); use one of {known} or an importable module"
            ) from None
        if attr:
            obj = getattr(mod, attr, None)
            if obj is None:
                raise NotFoundError(f"tool set {ref!r}: module {module_name} has no {attr!r}")
            fns = list(obj) if isinstance(obj, list | tuple) else [obj]
        else:
            fns = _module_functions(mod)
        if not fns:
            raise ConfigError(f"tool set {ref!r} has no functions; add typed functions or a TOOLS list")
        self._tools = [f if isinstance(f, Tool) else function_tool(f) for f in fns]
        facts = getattr(mod, "policy_facts", None)
        self._facts: Callable[[], dict[str, Any]] | None = facts if callable(facts) else None

    def tools(self) -> list[Tool]:
        return list(self._tools)

    def facts(self, run_id: str) -> dict[str, Any]:
        return dict(self._facts()) if self._facts is not None else {}


def open_toolset(ref: str, options: dict[str, Any] | None = None, folder: Path | None = None) -> Toolset:
    """The tool set a spec names: a short name (`manufacturing`), a module path, or `module:function`.

    Short names map to Toolset classes, built with `options` (e.g. {"seed": 3}) and a state `folder`.
    """
    if ref in TOOLSETS:
        module_name, _, cls_name = TOOLSETS[ref].partition(":")
        cls = getattr(importlib.import_module(module_name), cls_name)
        try:
            ts: Toolset = cls(folder, **(options or {}))
        except TypeError as e:
            raise ConfigError(f"bad toolset_options for {ref!r}: {e}; see {TOOLSETS[ref]}") from None
        return ts
    if options:
        raise ConfigError(f"tool set {ref!r} takes no options (only {', '.join(TOOLSETS)} do); remove them")
    return ModuleToolset(ref)


def load_toolset(ref: str) -> list[Tool]:
    """Tools of a module path or `module:function` (no state folder)."""
    return ModuleToolset(ref).tools()


class ToolRegistry:
    """The tools one agent may call, by name."""

    def __init__(self, tools: Iterable[Tool] = ()) -> None:
        self._tools: dict[str, Tool] = {}
        for t in tools:
            self.add(t)

    def add(self, t: Tool) -> None:
        if t.name in self._tools:
            raise ConfigError(f"two tools are named {t.name!r} ({self._tools[t.name].source}, {t.source}); rename one")
        self._tools[t.name] = t

    def get(self, name: str) -> Tool | None:
        return self._tools.get(name)

    def names(self) -> list[str]:
        return list(self._tools)

    def __len__(self) -> int:
        return len(self._tools)

    def __iter__(self) -> Any:
        return iter(self._tools.values())
