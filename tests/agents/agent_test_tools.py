"""Typed tools with real side effects for the agent runtime tests: a ledger file and a slow step.

The ledger path comes from AGENT_TEST_LEDGER so a killed subprocess and the test see the same file.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Literal

from blacksoil.agents.tools import tool


def _ledger() -> Path:
    return Path(os.environ["AGENT_TEST_LEDGER"])


def lookup_price(item: str, currency: Literal["EUR", "USD"] = "EUR") -> dict[str, object]:
    """Look up the unit price of an item.

    Args:
        item: Item name, e.g. "bolt".
        currency: Currency of the price.
    """
    return {"item": item, "price": 3 if item == "bolt" else 7, "currency": currency}


@tool(state_changing=True)
def record_entry(text: str) -> str:
    """Append one line to the ledger (a side effect that must never happen twice)."""
    with _ledger().open("a") as f:
        f.write(text + "\n")
    return f"recorded {text}"


@tool(state_changing=True)
def slow_entry(text: str, seconds: float = 30.0) -> str:
    """Append to the ledger, then take a long time (the test kills the run here)."""
    with _ledger().open("a") as f:
        f.write(text + "\n")
    Path(str(_ledger()) + ".slow").write_text("started")
    time.sleep(seconds)
    return f"slowly recorded {text}"


@tool(state_changing=True)
def keyed_entry(text: str, idempotency_key: str) -> str:
    """Append to the ledger once per idempotency key (safe to retry), then pause so the test can kill it."""
    path = _ledger()
    seen = path.read_text().splitlines() if path.exists() else []
    if not any(line.startswith(idempotency_key + " ") for line in seen):
        with path.open("a") as f:
            f.write(f"{idempotency_key} {text}\n")
    marker = Path(str(path) + ".keyed")
    if not marker.exists():
        marker.write_text("started")
        time.sleep(30)
    return f"recorded {text} once"


@tool(state_changing=True)
def transfer(amount: int, to: str) -> str:
    """Transfer money to an account."""
    with _ledger().open("a") as f:
        f.write(json.dumps({"transfer": amount, "to": to}) + "\n")
    return f"transferred {amount} to {to}"


@tool(state_changing=True)
def wipe_ledger() -> str:
    """Delete the whole ledger."""
    _ledger().unlink(missing_ok=True)
    return "wiped"


def broken(x: int) -> int:
    """A tool with a bug."""
    return x // 0


@tool(sandboxed=True)
def probe_host(path: str) -> dict[str, object]:
    """Report what the tool can see of the host (it runs in the sandbox, alone with its source)."""
    import os
    import socket

    try:
        socket.create_connection(("1.1.1.1", 53), timeout=1).close()
        net = True
    except OSError:
        net = False
    return {"exists": os.path.exists(path), "env": sorted(os.environ), "cwd": os.getcwd(), "network": net,
            "pid": os.getpid()}  # fmt: skip


TOOLS = [lookup_price, record_entry, slow_entry, keyed_entry, transfer, wipe_ledger, broken, probe_host]
