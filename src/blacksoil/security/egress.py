"""Allowlisted network egress for a sandboxed call: an HTTP(S) proxy on the host, reached through a unix socket.

The sandbox keeps its private network namespace; a relay inside it turns 127.0.0.1:3128 into that socket.

What this protects, and what it does not (tests in tests/security/test_sandbox_egress.py):
- Protects: only the allowlisted host:port pairs are reached (CONNECT or absolute-form HTTP); any other target
  gets 403 — test_other_hosts_are_refused.
- Protects: an IP literal of an allowed name is not the name: refused unless the IP itself is listed —
  test_ip_literal_is_not_the_name.
- Protects: an allowed name that resolves to loopback, link-local (cloud metadata) or unspecified addresses is
  refused (DNS rebinding to the host's own services) — test_name_resolving_to_loopback_is_refused.
- Protects: code that ignores the proxy gets no network at all (the namespace has only its own loopback) —
  test_direct_connections_still_fail.
- Does not protect: what the sandbox sends to an allowed host (data can leave through it; allow hosts you trust).
- Does not inspect TLS: the proxy sees the host name of CONNECT, not the URLs inside the encrypted stream.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import select
import socket
import struct
import threading
from pathlib import Path

from blacksoil.errors import UserError

PROXY_PORT = 3128
SOCKET_DIR = "/run/blacksoil-egress"
SOCKET_NAME = "proxy.sock"
_MAX_HEADER = 16384

# Runs inside the sandbox (stdlib only): 127.0.0.1:PROXY_PORT <-> the host's unix socket.
RELAY = r'''
import os, select, socket, sys, threading
srv = socket.socket(); srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("127.0.0.1", int(sys.argv[1]))); srv.listen(64)
open("/tmp/.egress-ready", "w").close()
def pump(a, b):
    try:
        while True:
            r, _, _ = select.select([a, b], [], [])
            for s in r:
                data = s.recv(65536)
                if not data: return
                (b if s is a else a).sendall(data)
    except OSError: pass
    finally: a.close(); b.close()
while True:
    c, _ = srv.accept()
    u = socket.socket(socket.AF_UNIX); u.connect(sys.argv[2])
    threading.Thread(target=pump, args=(c, u), daemon=True).start()
'''


def parse_allowlist(entries: tuple[str, ...]) -> frozenset[tuple[str, int]]:
    """("pypi.org", "files.example:8443", "[::1]:80") -> {("pypi.org", 443), ("files.example", 8443), ("::1", 80)}."""
    out = set()
    for e in entries:
        if e.startswith("["):
            host, _, rest = e[1:].partition("]")
            port = rest[1:] if rest.startswith(":") else "443"
        elif e.count(":") == 1:
            host, port = e.split(":")
        else:
            host, port = e, "443"
        if not host or not port.isdigit() or not 0 < int(port) < 65536 or any(c in host for c in "/@ "):
            raise UserError(f"allowed host {e!r} must look like 'name' or 'name:port' (port 1-65535)")
        out.add((host.lower(), int(port)))
    return frozenset(out)


def _forbidden_address(ip: str) -> bool:
    a = ipaddress.ip_address(ip)
    return a.is_loopback or a.is_link_local or a.is_unspecified or a.is_multicast


class EgressProxy:
    """A CONNECT / absolute-form HTTP proxy on a unix socket that lets through only the allowlisted targets."""

    def __init__(self, folder: Path, allowed: frozenset[tuple[str, int]], peer_uid: int | None = None) -> None:
        self.allowed = allowed
        self.peer_uid = peer_uid
        self.folder = folder
        folder.mkdir(mode=0o755, exist_ok=True)
        folder.chmod(0o755)
        self.path = folder / SOCKET_NAME
        self._srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._srv.bind(str(self.path))
        os.chmod(self.path, 0o666)  # the sandbox runs as another uid
        self._srv.listen(64)
        self._srv.settimeout(0.2)
        self._stop = threading.Event()
        self.refused: list[str] = []
        self.connected: list[str] = []
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        self._srv.close()
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._srv.accept()
            except (TimeoutError, OSError):
                continue
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn: socket.socket) -> None:
        try:
            if self.peer_uid is not None and _peer_uid(conn) != self.peer_uid:
                return  # only the sandbox this proxy serves may use it
            head = _read_head(conn)
            target = _target(head)
            if target is None:
                conn.sendall(b"HTTP/1.1 400 Bad Request\r\n\r\n")
                return
            host, port, is_connect = target
            upstream = self._open(host, port)
            if upstream is None:
                self.refused.append(f"{host}:{port}")
                conn.sendall(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")
                return
            self.connected.append(f"{host}:{port}")
            if is_connect:
                conn.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
            else:
                upstream.sendall(head)
            _pump(conn, upstream)
        except OSError:
            pass
        finally:
            conn.close()

    def _open(self, host: str, port: int) -> socket.socket | None:
        if (host.lower(), port) not in self.allowed:
            return None
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except OSError:
            return None
        literal = _is_ip(host)
        # A listed IP literal is taken as meant; a name must not lead to the host's own or metadata addresses.
        if not literal and any(_forbidden_address(str(info[4][0])) for info in infos):
            return None
        for family, kind, proto, _, addr in infos:
            s = socket.socket(family, kind, proto)
            s.settimeout(10)
            try:
                s.connect(addr)
                s.settimeout(None)
                return s
            except OSError:
                s.close()
        return None


def _peer_uid(conn: socket.socket) -> int:
    _, uid, _ = struct.unpack("3i", conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i")))
    return int(uid)


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        return False


def _read_head(conn: socket.socket) -> bytes:
    data = b""
    conn.settimeout(10)
    while b"\r\n\r\n" not in data and len(data) < _MAX_HEADER:
        chunk = conn.recv(4096)
        if not chunk:
            break
        data += chunk
    conn.settimeout(None)
    return data


def _target(head: bytes) -> tuple[str, int, bool] | None:
    """(host, port, is CONNECT) from the request line, or None when it is not a proxy request."""
    try:
        method, uri, _ = head.split(b"\r\n", 1)[0].decode("latin-1").split(" ", 2)
    except ValueError:
        return None
    if method == "CONNECT":
        host, _, port = uri.rpartition(":")
        return (host.strip("[]"), int(port), True) if port.isdigit() else None
    if uri.startswith("http://"):
        hostport = uri[7:].split("/", 1)[0]
        host, sep, port = hostport.rpartition(":")
        return (host, int(port), False) if sep and port.isdigit() else (hostport, 80, False)
    return None


def _pump(a: socket.socket, b: socket.socket) -> None:
    try:
        while True:
            ready, _, _ = select.select([a, b], [], [], 60)
            if not ready:
                return
            for s in ready:
                data = s.recv(65536)
                if not data:
                    return
                (b if s is a else a).sendall(data)
    finally:
        b.close()
