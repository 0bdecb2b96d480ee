"""`blacksoil up` as a process: a busy port fails fast, SIGTERM and SIGINT shut it down cleanly; config secrets.

Regression tests of issue 22, findings 3 and 7 (a second `up` on a busy port never exited; SIGINT was ignored
when backgrounded; a config error printed every API key).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from blacksoil.config import load_settings
from blacksoil.distributed import free_port
from blacksoil.errors import ConfigError

KEY = "test-key-0123456789abcdef"


def _env(home: Path) -> dict[str, str]:
    return os.environ | {"BLACKSOIL_HOME": str(home), "BLACKSOIL_PLATFORM__API_KEYS": f'{{"{KEY}": "acme"}}',
                         "BLACKSOIL_SERVING__THREADS": "1", "BLACKSOIL_SERVING__SLOTS": "2",
                         "BLACKSOIL_SERVING__CTX": "2048", "BLACKSOIL_PLATFORM__CONSOLE": "false"}


def _children(pid: int) -> set[int]:
    out: set[int] = set()
    for task in Path(f"/proc/{pid}/task").iterdir():
        out |= {int(x) for x in (task / "children").read_text().split()}
    return out


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


@pytest.fixture
def start_up(tmp_path: Path) -> Iterator[Callable[..., tuple[subprocess.Popen[str], int]]]:
    procs: list[subprocess.Popen[str]] = []

    def start(port: int | None = None, preexec: Callable[[], None] | None = None) -> tuple[subprocess.Popen[str], int]:
        port = port or free_port()
        proc = subprocess.Popen([sys.executable, "-m", "blacksoil.cli", "up", "--port", str(port)],
                                env=_env(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                preexec_fn=preexec)
        procs.append(proc)
        return proc, port

    yield start
    for p in procs:
        if p.poll() is None:
            p.kill()
            p.wait()


def _wait_up(proc: subprocess.Popen[str], port: int) -> None:
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"`blacksoil up` did not come up (exit {proc.poll()})")


def test_up_on_a_busy_port_exits_2(start_up: Callable[..., tuple[subprocess.Popen[str], int]]) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        proc, _ = start_up(busy.getsockname()[1])
        proc.wait(timeout=60)
    assert proc.returncode == 2


def test_up_on_a_busy_port_says_why(start_up: Callable[..., tuple[subprocess.Popen[str], int]]) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        proc, _ = start_up(busy.getsockname()[1])
        _, err = proc.communicate(timeout=60)
    assert "cannot listen" in err


def test_sigterm_stops_up_and_its_engine(start_up: Callable[..., tuple[subprocess.Popen[str], int]]) -> None:
    proc, port = start_up()
    _wait_up(proc, port)
    engines = _children(proc.pid)
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=60)
    assert (proc.returncode, [p for p in engines if _alive(p)]) == (0, [])


def test_sigint_stops_up_even_when_started_with_sigint_ignored(
        start_up: Callable[..., tuple[subprocess.Popen[str], int]]) -> None:
    # A shell starts a background job (`blacksoil up &`) with SIGINT ignored.
    proc, port = start_up(preexec=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    _wait_up(proc, port)
    proc.send_signal(signal.SIGINT)
    proc.wait(timeout=60)
    assert proc.returncode == 0


def test_config_errors_never_print_api_keys() -> None:
    secret = "sk-live-0123456789abcdef0123"
    with pytest.raises(ConfigError) as e:
        load_settings(platform={"api_keys": {secret: "acme", "short": "beta"}})
    assert secret not in e.value.message and "short" not in e.value.message
