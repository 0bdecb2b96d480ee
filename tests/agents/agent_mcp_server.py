"""A tiny real MCP server for the agent runtime tests (official `mcp` SDK, MCPServer).

Run: python agent_mcp_server.py stdio | python agent_mcp_server.py http PORT
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError

server = MCPServer("plant-notes")


@server.tool()
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


@server.tool()
def stamp(text: str) -> str:
    """Append a stamped line to the notes file (a side effect)."""
    path = Path(os.environ.get("AGENT_TEST_LEDGER", "notes.txt"))
    with path.open("a") as f:
        f.write(f"mcp:{text}\n")
    return f"stamped {text}"


@server.tool()
def fail(reason: str) -> str:
    """Always fails, deliberately (its message reaches the client)."""
    raise ToolError(f"failed because {reason}")


if __name__ == "__main__":
    if sys.argv[1] == "stdio":
        server.run("stdio")
    else:
        server.run("streamable-http", host="127.0.0.1", port=int(sys.argv[2]))
