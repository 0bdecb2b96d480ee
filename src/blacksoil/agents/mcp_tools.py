"""MCP servers as agent tools: connect over stdio or streamable HTTP with the official `mcp` SDK.

The SDK is async; one background event loop per connection lets the synchronous agent loop call it.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from concurrent.futures import Future
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from blacksoil.agents.tools import Tool, ToolContext, ToolFlags
from blacksoil.errors import ConfigError, RetryableError, UserError


class MCPServerSpec(BaseModel):
    """How to reach one MCP server: a command (stdio) or a URL (streamable HTTP)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    """Prefix-free server name used in logs and tool sources."""
    command: list[str] | None = None
    """Command line that starts a stdio server, e.g. [python, server.py]."""
    url: str | None = None
    """Streamable HTTP endpoint, e.g. http://127.0.0.1:8000/mcp."""
    env: dict[str, str] = Field(default_factory=dict)
    """Environment for a stdio server (only these variables: no inherited secrets)."""
    flags: dict[str, ToolFlagsSpec] = Field(default_factory=dict)
    """Per-tool safety flags (the fields given override `default_flags`)."""
    default_flags: ToolFlagsSpec = Field(default_factory=lambda: ToolFlagsSpec(untrusted_output=True))
    """Flags of tools not named in `flags` (MCP tools are untrusted by default)."""

    @model_validator(mode="after")
    def _one_transport(self) -> MCPServerSpec:
        if (self.command is None) == (self.url is None):
            raise ValueError(f"MCP server {self.name!r}: give exactly one of `command` (stdio) or `url` (HTTP)")
        return self


class ToolFlagsSpec(BaseModel):
    """Tool flags as written in a spec file."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    sandboxed: bool = False
    requires_approval: bool = False
    state_changing: bool = False
    sensitive: bool = False
    untrusted_output: bool = False

    def flags(self) -> ToolFlags:
        return ToolFlags(**self.model_dump())


MCPServerSpec.model_rebuild()


class MCPConnection:
    """One open MCP client session, usable from synchronous code."""

    def __init__(self, spec: MCPServerSpec, timeout_s: float = 60.0) -> None:
        self.spec = spec
        self.timeout_s = timeout_s
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name=f"mcp-{spec.name}", daemon=True)
        self._client: Any = None
        self._stop: asyncio.Event | None = None
        self._session_done: Future[None] | None = None

    def open(self) -> MCPConnection:
        """Start the session (spawns the stdio server or connects to the URL)."""
        self._thread.start()
        ready: Future[None] = Future()
        self._session_done = asyncio.run_coroutine_threadsafe(self._hold(ready), self._loop)
        try:
            ready.result(timeout=self.timeout_s)
        except Exception as e:
            self.close()
            where = self.spec.url or " ".join(self.spec.command or [])
            raise RetryableError(f"MCP server {self.spec.name!r} at {where} did not start: {e!r}") from None
        return self

    async def _hold(self, ready: Future[None]) -> None:
        # The client must be entered and exited in the same task (anyio cancel scopes).
        from mcp import Client, StdioServerParameters

        target: Any = self.spec.url
        if self.spec.command:
            target = StdioServerParameters(command=self.spec.command[0], args=self.spec.command[1:], env=self.spec.env)
        self._stop = asyncio.Event()
        try:
            async with Client(target, read_timeout_seconds=self.timeout_s) as client:
                self._client = client
                ready.set_result(None)
                await self._stop.wait()
        except BaseException as e:
            if not ready.done():
                ready.set_exception(e)
            else:
                raise

    def _run(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout=self.timeout_s + 5)

    def tools(self) -> list[Tool]:
        """The server's tools as agent tools, with the spec's flags."""
        listed = self._run(self._client.list_tools())
        out = []
        for t in listed.tools:
            named = self.spec.flags.get(t.name)
            # A tool's own flags override only the fields they set; the rest come from default_flags.
            chosen = self.spec.default_flags if named is None else self.spec.default_flags.model_copy(
                update={k: getattr(named, k) for k in named.model_fields_set})  # fmt: skip
            flags = chosen.flags()
            schema = dict(t.input_schema or {"type": "object", "properties": {}})
            schema.pop("title", None)
            for prop in schema.get("properties", {}).values():
                if isinstance(prop, dict):
                    prop.pop("title", None)
            out.append(
                Tool(
                    name=t.name,
                    description=(t.description or t.name).strip().split("\n\n")[0],
                    parameters=schema,
                    flags=flags,
                    invoke=self._invoker(t.name),
                    source=f"mcp:{self.spec.name}",
                )
            )
        return out

    def _invoker(self, name: str) -> Any:
        def invoke(arguments: dict[str, Any], ctx: ToolContext) -> Any:
            result = self._run(self._client.call_tool(name, arguments, meta={"idempotency_key": ctx.idempotency_key}))
            text = "\n".join(getattr(c, "text", "") for c in result.content if getattr(c, "type", "") == "text")
            if result.is_error:
                raise UserError(f"MCP tool {name} failed: {text or 'no message'}")
            if result.structured_content is not None:
                sc = result.structured_content
                return sc["result"] if isinstance(sc, dict) and set(sc) == {"result"} else sc
            return text

        return invoke

    def close(self) -> None:
        """End the session and stop the background loop."""
        if self._stop is not None and self._loop.is_running():
            self._loop.call_soon_threadsafe(self._stop.set)
            if self._session_done is not None:
                # closing a broken session must not mask the run's result
                with contextlib.suppress(Exception):
                    self._session_done.result(timeout=10)
        if self._loop.is_running():
            self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread.is_alive():
            self._thread.join(timeout=5)


def open_servers(specs: list[MCPServerSpec], timeout_s: float) -> tuple[list[MCPConnection], list[Tool]]:
    """Open every server; on any failure close those already open and raise."""
    conns: list[MCPConnection] = []
    tools: list[Tool] = []
    try:
        for s in specs:
            conn = MCPConnection(s, timeout_s).open()
            conns.append(conn)
            tools.extend(conn.tools())
    except Exception:
        for c in conns:
            c.close()
        raise
    if not tools and specs:
        raise ConfigError(f"MCP servers {[s.name for s in specs]} expose no tools; check the servers")
    return conns, tools
