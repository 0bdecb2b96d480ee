"""MCP servers as agent tools: a real server started by the test, over stdio and streamable HTTP."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from agent_helpers import HERE, TEST_CEDAR, team

from blacksoil.agents.mcp_tools import MCPConnection, MCPServerSpec
from blacksoil.agents.tools import ToolContext
from blacksoil.distributed import free_port
from blacksoil.errors import RetryableError, UserError

SERVER = str(HERE / "agent_mcp_server.py")
CTX = ToolContext("r", "c", "r:c", "a")


def _stdio(ledger: Path) -> MCPServerSpec:
    return MCPServerSpec(name="notes", command=[sys.executable, SERVER, "stdio"],
                         env={"AGENT_TEST_LEDGER": str(ledger), "PATH": os.environ.get("PATH", "")},
                         flags={"stamp": {"state_changing": True}})  # fmt: skip


@pytest.fixture
def http_server(ledger: Path) -> Iterator[str]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, SERVER, "http", str(port)], env={**os.environ},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    url = f"http://127.0.0.1:{port}/mcp"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                httpx.get(url, timeout=1)
                break
            except httpx.HTTPError:
                assert proc.poll() is None and time.monotonic() < deadline, "MCP HTTP server did not start"
                time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_stdio_server_tools_are_listed_and_called(ledger: Path) -> None:
    conn = MCPConnection(_stdio(ledger), timeout_s=60).open()
    try:
        tools = {t.name: t for t in conn.tools()}
        assert set(tools) == {"add", "stamp", "fail"}
        assert tools["add"].parameters["required"] == ["a", "b"]
        assert tools["stamp"].flags.state_changing and tools["stamp"].flags.untrusted_output  # MCP output is untrusted
        assert tools["add"].flags.untrusted_output and not tools["add"].flags.state_changing
        assert tools["add"].invoke({"a": 2, "b": 40}, CTX) == 42
        assert tools["stamp"].invoke({"text": "hi"}, CTX) == "stamped hi"
        with pytest.raises(UserError, match="failed because reasons"):
            tools["fail"].invoke({"reason": "reasons"}, CTX)
    finally:
        conn.close()
    assert ledger.read_text() == "mcp:hi\n"


def test_http_server_through_the_agent_loop(http_server: str, make_runtime: Any, ledger: Path) -> None:
    server = {"name": "notes", "url": http_server, "flags": {"stamp": {"state_changing": True}}}
    spec = {"name": "clerk", "roles": ["clerk"], "policies": [TEST_CEDAR], "mcp_servers": [server]}
    rt, model = make_runtime([{"calls": [["add", {"a": 1, "b": 2}]]}, {"content": "3"}], team(spec))
    r = rt.run("add 1 and 2")
    assert (r.status, r.answer) == ("completed", "3")
    assert {t["function"]["name"] for t in model.requests[0]["tools"]} == {"add", "stamp", "fail"}
    assert rt.store.messages(r.run_id)[2]["content"] == "3"
    assert rt.store.get_run(r.run_id).flags["untrusted_input"]  # the MCP result marked the run


def test_unreachable_server_is_a_clear_error() -> None:
    port = free_port()
    spec = MCPServerSpec(name="gone", url=f"http://127.0.0.1:{port}/mcp")
    with pytest.raises(RetryableError, match="MCP server 'gone'"):
        MCPConnection(spec, timeout_s=5).open()
