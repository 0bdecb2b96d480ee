"""Helpers of the agent API tests: `blacksoil up` as a real process (killable), and a Server-Sent Events reader.

Only the agent's model is scripted (the outside world, as in the CLI's durable-run tests); the gateway process,
its engine, auth, run store, policies, approvals and tools are the real ones.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

from blacksoil.distributed import free_port

HERE = Path(__file__).parent
KEY_A = "tenant-a-key-0123456789abcdef"
KEY_B = "tenant-b-key-0123456789abcdef"


class Gateway:
    """`blacksoil up` on a fixed home and port; `kill()` is a SIGKILL, `start()` brings it back on the same port."""

    def __init__(self, home: Path, model_url: str, ledger: Path) -> None:
        self.home = home
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None
        (home / "agents" / "policies").mkdir(parents=True, exist_ok=True)
        shutil.copy(HERE / "data" / "test.cedar", home / "agents" / "policies" / "test.cedar")
        self.env = os.environ | {
            "BLACKSOIL_HOME": str(home),
            "BLACKSOIL_PLATFORM__API_KEYS": json.dumps({KEY_A: "acme", KEY_B: "globex"}),
            "BLACKSOIL_PLATFORM__CONSOLE": "false",
            "BLACKSOIL_SERVING__THREADS": "1", "BLACKSOIL_SERVING__SLOTS": "1", "BLACKSOIL_SERVING__CTX": "1024",
            "BLACKSOIL_AGENTS__GATEWAY_URL": model_url,
            "BLACKSOIL_AGENTS__API_TOOLSETS": '["agent_test_tools"]',
            "BLACKSOIL_AGENTS__API_STREAM_POLL_S": "0.05",
            "AGENT_TEST_LEDGER": str(ledger),
            "PYTHONPATH": f"{HERE}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
        }  # fmt: skip

    def start(self) -> None:
        log = (self.home / "up.log").open("ab")
        self.proc = subprocess.Popen([sys.executable, "-m", "blacksoil.cli", "up", "--port", str(self.port)],
                                     env=self.env, stdout=log, stderr=subprocess.STDOUT)  # fmt: skip
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, (self.home / "up.log").read_text()[-3000:]
            try:
                if httpx.get(f"{self.url}/health", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise AssertionError("`blacksoil up` did not come up in 120 s")

    def kill(self) -> None:
        """SIGKILL the gateway and the engine it started (a crash, not a shutdown)."""
        assert self.proc is not None
        children = _children(self.proc.pid)
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)
        for pid in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.kill()

    def client(self, key: str) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers={"Authorization": f"Bearer {key}"}, timeout=30)


def _children(pid: int) -> set[int]:
    out: set[int] = set()
    for task in Path(f"/proc/{pid}/task").iterdir():
        out |= {int(x) for x in (task / "children").read_text().split()}
    return out


def sse(client: httpx.Client, path: str, last_event_id: int | None = None, *, until: Any = None,
        timeout_s: float = 60) -> Iterator[dict[str, Any]]:  # fmt: skip
    """The events of an SSE stream as dicts (with their `id` and `event`); stops after the event `until(ev)` accepts,
    or when the server ends the stream."""
    headers = {"Last-Event-ID": str(last_event_id)} if last_event_id is not None else {}
    deadline = time.monotonic() + timeout_s
    with client.stream("GET", path, headers=headers, timeout=httpx.Timeout(timeout_s, read=timeout_s)) as r:
        assert r.status_code == 200, r.read().decode()
        assert r.headers["content-type"].startswith("text/event-stream")
        fields: dict[str, str] = {}
        for line in r.iter_lines():
            assert time.monotonic() < deadline, "the event stream ran past its deadline"
            if line == "":
                if "data" in fields:
                    ev = json.loads(fields["data"])
                    ev["sse_id"], ev["sse_event"] = int(fields["id"]), fields["event"]
                    yield ev
                    if until is not None and until(ev):
                        return
                fields = {}
            elif not line.startswith(":"):
                name, _, value = line.partition(":")
                fields[name] = value.removeprefix(" ")
