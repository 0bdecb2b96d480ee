"""Allowlisted egress: the sandbox reaches listed host:port pairs through the host proxy, and nothing else."""

from __future__ import annotations

import http.server
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from blacksoil.errors import UserError
from blacksoil.security.config import SecurityConfig
from blacksoil.security.egress import EgressProxy, parse_allowlist
from blacksoil.security.sandbox import Sandbox, SandboxSpec

FETCH = """
import sys, urllib.request
for url in sys.argv[1:] or URLS:
    try:
        print(url, urllib.request.urlopen(url, timeout=5).read().decode())
    except Exception as e:
        print(url, "ERR", getattr(e, "code", type(e).__name__))
"""


class _Hello(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"hello-from-host")

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def port() -> Iterator[int]:
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Hello)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield srv.server_address[1]
    srv.shutdown()
    srv.server_close()


@pytest.fixture(scope="module")
def sandbox(bwrap: str) -> Sandbox:
    return Sandbox(SecurityConfig(sandbox_wall_s=20.0))


def fetch(sandbox: Sandbox, allowed: tuple[str, ...], *urls: str) -> tuple[list[str], tuple[str, ...]]:
    code = f"URLS = {list(urls)!r}\n" + FETCH
    r = sandbox.run(SandboxSpec(code=code, allowed_hosts=allowed))
    assert r.verdict == "ok", r
    return r.stdout.splitlines(), r.network


def test_allowed_target_is_reached(sandbox: Sandbox, port: int) -> None:
    lines, network = fetch(sandbox, (f"127.0.0.1:{port}",), f"http://127.0.0.1:{port}/")
    assert lines == [f"http://127.0.0.1:{port}/ hello-from-host"] and network == (f"allowed 127.0.0.1:{port}",)


def test_connect_tunnel(sandbox: Sandbox, port: int) -> None:
    code = f"""
import socket
s = socket.create_connection(("127.0.0.1", 3128))
s.sendall(b"CONNECT 127.0.0.1:{port} HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n")
print(s.recv(100).split(b"\\r\\n")[0].decode())
s.sendall(b"GET / HTTP/1.0\\r\\n\\r\\n")
body = b""
while chunk := s.recv(4096):  # HTTP/1.0: the server closes; one recv may hold only the headers
    body += chunk
print(b"hello-from-host" in body)
"""
    r = sandbox.run(SandboxSpec(code=code, allowed_hosts=(f"127.0.0.1:{port}",)))
    assert r.stdout.splitlines() == ["HTTP/1.1 200 Connection established", "True"], r


def test_other_hosts_are_refused(sandbox: Sandbox, port: int) -> None:
    lines, network = fetch(sandbox, (f"127.0.0.1:{port}",), f"http://127.0.0.1:{port + 1}/", "http://10.1.2.3/",
                           "http://pypi.org/")
    assert all(line.endswith("ERR 403") for line in lines), lines
    assert all(n.startswith("refused") for n in network) and len(network) == 3


def test_ip_literal_is_not_the_name(sandbox: Sandbox, port: int) -> None:
    lines, _ = fetch(sandbox, (f"localhost:{port}",), f"http://127.0.0.1:{port}/")
    assert lines[0].endswith("ERR 403")


def test_name_resolving_to_loopback_is_refused(sandbox: Sandbox, port: int) -> None:
    # "localhost" is allowed by name, but a name must not lead back to the host's own services.
    lines, network = fetch(sandbox, (f"localhost:{port}",), f"http://localhost:{port}/")
    assert lines[0].endswith("ERR 403") and network == (f"refused localhost:{port}",)


def test_direct_connections_still_fail(sandbox: Sandbox, port: int) -> None:
    code = f"""
import socket
for addr in (("127.0.0.1", {port}), ("10.1.2.3", 80)):
    try:
        socket.create_connection(addr, timeout=2); print("connected", addr)
    except OSError as e:
        print("failed", type(e).__name__)
"""
    r = sandbox.run(SandboxSpec(code=code, allowed_hosts=(f"127.0.0.1:{port}",)))
    assert "connected" not in r.stdout and r.stdout.count("failed") == 2, r


def test_proxy_serves_only_its_sandbox(tmp_path: Path, port: int) -> None:
    proxy = EgressProxy(tmp_path / "egress", parse_allowlist((f"127.0.0.1:{port}",)), peer_uid=123456)
    try:
        s = socket.socket(socket.AF_UNIX)
        s.connect(str(proxy.path))
        s.settimeout(5)
        try:
            # The proxy may hang up before the request is even written (a broken pipe under load): same refusal.
            s.sendall(f"CONNECT 127.0.0.1:{port} HTTP/1.1\r\n\r\n".encode())
            answer = s.recv(100)
        except (BrokenPipeError, ConnectionResetError):
            answer = b""
        assert answer == b"" and proxy.connected == []  # another uid (this test process) is hung up on
        s.close()
    finally:
        proxy.close()


def test_allowlist_syntax() -> None:
    assert parse_allowlist(("PyPI.org", "files.example:8443", "[::1]:80")) == frozenset(
        {("pypi.org", 443), ("files.example", 8443), ("::1", 80)})
    for bad in ("host:0", "host:99999", "user@host", "http://host/", ":80"):
        with pytest.raises(UserError, match="allowed host"):
            parse_allowlist((bad,))
