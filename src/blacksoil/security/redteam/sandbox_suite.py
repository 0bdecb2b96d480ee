"""Runs the sandbox attack catalogue against the real sandbox and judges each attack deterministically.

The harness plants canaries (a secret file, an env secret, listening sockets, a victim process) and checks them.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from string import Template

from blacksoil.errors import UserError
from blacksoil.security.config import SecurityConfig
from blacksoil.security.redteam.attacks import ATTACKS, PRELUDE, Attack
from blacksoil.security.sandbox import Sandbox, SandboxResult, SandboxSpec, read_workspace_file

# Small limits keep the resource attacks quick; the checks compare against these.
ATTACK_LIMITS = SecurityConfig(sandbox_cpu_s=2, sandbox_memory_mb=256, sandbox_max_pids=32, sandbox_file_mb=16,
                               sandbox_open_files=128, sandbox_wall_s=6.0, sandbox_output_kb=256)
ENV_SECRET = "BLACKSOIL_REDTEAM_SECRET"
_SYSTEM_MARKERS = (Path("/usr/bs_redteam_pwned"), Path("/etc/bs_redteam_pwned"), Path("/bs_redteam_pwned"))


@dataclass
class Outcome:
    """One attack's verdict."""

    attack: Attack
    escaped: bool
    evidence: str
    result: SandboxResult


@dataclass
class _Listener:
    """A host socket the attacks try to reach; `hits` counts connections that got through."""

    sock: socket.socket
    hits: int = 0
    stop: threading.Event = field(default_factory=threading.Event)

    def serve(self) -> None:
        self.sock.settimeout(0.1)
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except (TimeoutError, OSError):
                continue
            self.hits += 1
            conn.close()


class Harness:
    """Canaries and listeners on the host for one suite run."""

    def __init__(self) -> None:
        self.token = "BSRT-" + secrets.token_hex(12)
        self.dir = Path(tempfile.mkdtemp(prefix="bs-redteam-"))
        (self.dir / "home" / ".ssh").mkdir(parents=True)
        (self.dir / "home" / ".ssh" / "id_rsa").write_text(f"-----BEGIN FAKE KEY----- {self.token}\n")
        self.canary = self.dir / "secret.txt"
        self.canary.write_text(self.token)
        self.listeners: dict[str, _Listener] = {}
        self._threads: list[threading.Thread] = []
        self.victim = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)", "bs-redteam-victim"])
        self.abstract = f"bs-redteam-{self.token}"
        for name, family, addr in (("lo", socket.AF_INET, ("127.0.0.1", 0)), ("ext", socket.AF_INET, ("0.0.0.0", 0)),
                                   ("abstract", socket.AF_UNIX, "\0" + self.abstract)):
            s = socket.socket(family, socket.SOCK_STREAM)
            s.bind(addr)
            s.listen(16)
            self.listeners[name] = lst = _Listener(s)
            t = threading.Thread(target=lst.serve, daemon=True)
            t.start()
            self._threads.append(t)
        self._old_env = os.environ.get(ENV_SECRET)
        os.environ[ENV_SECRET] = self.token  # a secret in the parent's environment must not reach the sandbox

    def facts(self) -> dict[str, str]:
        import blacksoil

        return {
            "token": self.token, "canary": str(self.canary), "canary_dir": str(self.dir),
            "port_lo": str(self.listeners["lo"].sock.getsockname()[1]),
            "port_ext": str(self.listeners["ext"].sock.getsockname()[1]), "host_ip": _host_ip(),
            "abstract": self.abstract, "victim": str(self.victim.pid), "checkout": str(Path(blacksoil.__file__)),
        }

    def close(self) -> None:
        for lst in self.listeners.values():
            lst.stop.set()
        for t in self._threads:
            t.join(timeout=2)
        for lst in self.listeners.values():
            lst.sock.close()
        self.victim.kill()
        self.victim.wait()
        shutil.rmtree(self.dir, ignore_errors=True)
        if self._old_env is None:
            os.environ.pop(ENV_SECRET, None)
        else:
            os.environ[ENV_SECRET] = self._old_env


def _host_ip() -> str:
    # The address the host reaches the outside with; without a route, the loopback (still outside the sandbox).
    with contextlib.suppress(OSError), socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.connect(("192.0.2.1", 9))
        ip: str = s.getsockname()[0]
        return ip
    return "127.0.0.1"


@contextlib.contextmanager
def harness() -> Iterator[Harness]:
    h = Harness()
    try:
        yield h
    finally:
        h.close()


def run_attack(sandbox: Sandbox, h: Harness, attack: Attack) -> Outcome:
    """Run one attack in a fresh workspace and judge it."""
    code = Template(PRELUDE + attack.code).substitute(h.facts())
    ws = Path(tempfile.mkdtemp(prefix="redteam-", dir=sandbox.workspace_root()))
    hits_before = {k: v.hits for k, v in h.listeners.items()}
    try:
        res = sandbox.run(SandboxSpec(code=code, workspace=ws))
        time.sleep(0.05) if attack.check == "no_connection" else None
        evidence = _judge(attack, h, res, ws, hits_before, sandbox.config)
    finally:
        shutil.rmtree(ws, ignore_errors=True)
    return Outcome(attack, evidence is not None, evidence or "", res)


def _judge(attack: Attack, h: Harness, res: SandboxResult, ws: Path, hits_before: dict[str, int],
           limits: SecurityConfig) -> str | None:
    out = res.stdout + res.stderr
    if h.token in out:
        return f"secret token in output: {out[:200]!r}"
    kind, _, arg = attack.check.partition(":")
    checks: dict[str, Callable[[], str | None]] = {
        "token": lambda: None,
        "no_pwned_file": lambda: "wrote a host file" if (h.dir / "pwned").exists() else None,
        "no_system_file": lambda: next((f"wrote {p}" for p in _SYSTEM_MARKERS if p.exists()), None),
        "read_back": lambda: _read_back(ws, arg, h.token),
        "no_connection": lambda: next((f"connected to host listener {k}" for k, v in h.listeners.items()
                                       if v.hits > hits_before[k]), None),
        "victim_alive": lambda: "killed a host process" if h.victim.poll() is not None else None,
        "forks_capped": lambda: _over(out, "forked", limits.sandbox_max_pids, "processes"),
        "memory_capped": lambda: _over(out, "mb", limits.sandbox_memory_mb, "MiB in one process", total=False),
        "memory_tree_capped": lambda: _over(out, "mb", 2 * limits.sandbox_memory_mb + 64, "MiB held at once",
                                             total=False),
        "ends_by": lambda: _ended(res, arg, limits),
        "disk_capped": lambda: _disk(res, ws, limits),
        "tmp_capped": lambda: _over(out, "mb", limits.sandbox_file_mb, "MiB in a tmpfs", total=False),
        "fds_capped": lambda: _over(out, "fds", limits.sandbox_open_files, "open files"),
        "output_capped": lambda: ("output not capped" if len(res.stdout) > limits.sandbox_output_kb * 1024
                                  or not res.truncated else None),
    }
    if kind not in checks:
        raise UserError(f"attack {attack.name} names an unknown check {attack.check!r}; use one of {sorted(checks)}")
    return checks[kind]()


def _read_back(ws: Path, rel: str, token: str) -> str | None:
    try:
        data = read_workspace_file(ws, rel)
    except UserError:
        return None
    return "host read a secret through a planted link" if token.encode() in data else None


def _over(out: str, key: str, limit: int, what: str, total: bool = True) -> str | None:
    values = [int(p[1]) for line in out.splitlines() if len(p := line.split()) == 2 and p[0] == key
              and p[1].isdigit()]
    seen = sum(values) if total else max(values, default=0)
    return f"{seen} {what} > limit {limit}" if seen > limit else None


def _ended(res: SandboxResult, by: str, limits: SecurityConfig) -> str | None:
    # Contained = stopped within the wall limit. On a loaded machine a CPU spinner may reach the wall limit
    # before it has burnt its CPU seconds, so either verdict counts (test_sandbox checks RLIMIT_CPU alone).
    bound = limits.sandbox_wall_s + 2.0
    if res.duration_ms / 1000 > bound:
        return f"ran {res.duration_ms / 1000:.1f} s > {bound:.1f} s"
    expected = ("cpu_limit", "killed", "timeout") if by == "cpu" else ("timeout",)
    return None if res.verdict in expected else f"verdict {res.verdict}, expected {' or '.join(expected)}"


def _disk(res: SandboxResult, ws: Path, limits: SecurityConfig) -> str | None:
    size = sum(f.stat().st_size for f in ws.rglob("*") if f.is_file() and not f.is_symlink())
    quota = 4 * limits.sandbox_file_mb * 2**20
    return f"left {size >> 20} MiB in the workspace > quota {quota >> 20} MiB" if size > quota else None


def run_suite(
    sandbox: Sandbox | None = None, attacks: Sequence[Attack] = ATTACKS,
    progress: Callable[[Outcome], None] | None = None,
) -> list[Outcome]:
    """Every attack, in order, against the sandbox (small limits by default)."""
    sandbox = sandbox or Sandbox(ATTACK_LIMITS)
    sandbox.require()
    outcomes = []
    with harness() as h:
        for attack in attacks:
            o = run_attack(sandbox, h, attack)
            outcomes.append(o)
            if progress:
                progress(o)
    return outcomes


def overhead_ms(sandbox: Sandbox | None = None, n: int = 20) -> tuple[float, float, float]:
    """p50 wall time (ms) of `/bin/true` unsandboxed, sandboxed, and their difference."""
    sandbox = sandbox or Sandbox(ATTACK_LIMITS)
    plain, boxed = [], []
    for _ in range(n):
        t = time.perf_counter()
        subprocess.run(["/bin/true"], check=True)
        plain.append((time.perf_counter() - t) * 1000)
        t = time.perf_counter()
        sandbox.run(SandboxSpec(argv=("/bin/true",)))
        boxed.append((time.perf_counter() - t) * 1000)
    p, b = statistics.median(plain), statistics.median(boxed)
    return p, b, b - p
