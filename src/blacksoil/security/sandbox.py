"""The sandbox for tools marked `sandboxed` (shell, Python code, file operations): bubblewrap + seccomp + limits.

Each call is a separate process tree in fresh user, mount, pid, network, ipc, uts and cgroup namespaces.

What this protects, and what it does not (each point is an attack in blacksoil.security.redteam, run by
tests/security/test_sandbox_attacks.py and `blacksoil redteam sandbox`):
- Protects: host files — only /usr (and the /bin, /lib links into it), a few /etc files the loader needs, and the
  workspace are visible, all read-only except the workspace; /etc/shadow, ~/.ssh, /root, /home, the blacksoil
  home and the caller's checkout do not exist inside — attacks `read_shadow`, `read_ssh_key`, `list_root`, ...
- Protects: writes outside the workspace (read-only binds, size-capped tmpfs /tmp and /dev/shm) —
  `write_usr`, `write_outside_workspace`, `tmp_fill`.
- Protects: symlinks planted in the workspace are not followed by the host: `read_workspace_file` opens with
  O_NOFOLLOW under the workspace only — `symlink_out_of_workspace`, `symlink_parent_swap`.
- Protects: /proc shows only the sandbox's own processes (pid namespace); /proc/1 is the sandbox init with an
  empty environment — `proc_environ`, `proc_root_escape`, `proc_mem_write`.
- Protects: the network — only a private loopback (network namespace): no egress, no reaching services on the
  host's loopback, no DNS — `egress_tcp`, `host_loopback_service`, `dns_lookup`, `raw_socket`.
- Protects: secrets in the environment — the process starts from an empty environment plus what the spec passes —
  `env_secret`, `proc_environ`.
- Protects: privileges — no capabilities, no_new_privs (setuid binaries do not elevate), no new user namespaces,
  and the seccomp filter of blacksoil.security.seccomp — `setuid_binary`, `unshare_user`, `ptrace_*`, `mount_proc`.
- Protects: CPU, memory, processes, file size, open files, wall time (blacksoil.security.limits) — `cpu_spin`,
  `memory_bomb`, `fork_bomb`, `disk_fill_*`, `fd_exhaustion`, `sleep_forever`.
- Protects: the workspace disk quota: a call that leaves more than `disk_mb` in its workspace is killed and
  its workspace is emptied — `disk_fill_many_files`.
- Protects: the caller's memory: stdout/stderr beyond `sandbox_output_kb` are drained and dropped — `output_flood`.
- Does not protect: against kernel exploits through the system calls still allowed, nor CPU side channels.
- Does not protect: the workspace's own content (the sandboxed code may read and change everything in it).
- Network allowlists (`allowed_hosts`) go through blacksoil.security.egress: an HTTP(S) proxy on the host that
  lets through only the listed host:port pairs; the sandbox still has no network interface of its own.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import selectors
import shutil
import signal
import stat
import subprocess
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from blacksoil.errors import ConfigError, UserError
from blacksoil.security import seccomp
from blacksoil.security.config import SecurityConfig
from blacksoil.security.egress import PROXY_PORT, RELAY, SOCKET_DIR, SOCKET_NAME, EgressProxy, parse_allowlist
from blacksoil.security.limits import CgroupLimiter, Limits, preexec, sandbox_uid

__all__ = ["WORKSPACE", "Sandbox", "SandboxResult", "SandboxSpec", "read_workspace_file"]

WORKSPACE = "/workspace"
_ETC_FILES = ("ld.so.cache", "ld.so.conf", "ld.so.conf.d", "alternatives", "localtime", "ssl/certs", "ca-certificates",
              "ca-certificates.conf")  # public CA certificates, for HTTPS through the egress proxy; never ssl/private
_TOP_LINKS = ("bin", "sbin", "lib", "lib32", "lib64", "libx32")
_QUOTA_POLL_S = 0.05
# With an allowlist, pid 1 starts the in-sandbox relay, waits (<= 5 s) until it listens, then runs the tool.
_RELAY_WRAPPER = (
    'relay="$1"; py="$2"; shift 2; "$py" -I -c "$relay" ' + f"{PROXY_PORT} {SOCKET_DIR}/{SOCKET_NAME}" + ' & i=0; '
    'while [ ! -e /tmp/.egress-ready ] && [ $i -lt 500 ]; do sleep 0.01; i=$((i+1)); done; "$@"; exit $?'
)


def _proxy_env() -> list[str]:
    url = f"http://127.0.0.1:{PROXY_PORT}"
    out: list[str] = []
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY"):
        out += ["--setenv", name, url]
    return out


@dataclass(frozen=True)
class SandboxSpec:
    """What to run (argv, or Python code run with the system python3) and under which limits."""

    argv: tuple[str, ...] = ()
    code: str | None = None
    workspace: Path | None = None
    """A per-run folder kept between calls; None = a fresh folder removed after the call."""
    env: Mapping[str, str] = field(default_factory=dict)
    stdin: str | None = None
    allowed_hosts: tuple[str, ...] = ()
    cpu_s: int | None = None
    memory_mb: int | None = None
    max_pids: int | None = None
    file_mb: int | None = None
    open_files: int | None = None
    wall_s: float | None = None
    disk_mb: int | None = None
    """Largest total size of the workspace after the call (MiB); None = 4 x file_mb."""


@dataclass(frozen=True)
class SandboxResult:
    """What a sandboxed call produced and how it ended."""

    exit_code: int
    stdout: str
    stderr: str
    verdict: str
    """ok | error | timeout | cpu_limit | killed | disk_quota"""
    duration_ms: float
    truncated: bool
    layers: tuple[str, ...]
    """The defenses that were active (namespaces, seccomp, rlimits, cgroup, uid, egress-proxy)."""
    network: tuple[str, ...] = ()
    """Egress through the proxy: "allowed host:port" / "refused host:port" per connection attempt."""

    @property
    def ok(self) -> bool:
        return self.verdict == "ok"


class Sandbox:
    """Runs `SandboxSpec`s under bubblewrap; `require()` checks the machine first."""

    def __init__(self, config: SecurityConfig | None = None) -> None:
        """`config`: the caller's security settings (limits, bwrap path); None = their defaults."""
        self.config = config or SecurityConfig()
        self.python = "/usr/bin/python3"

    def bwrap(self) -> str | None:
        return shutil.which(self.config.bwrap_path)

    def require(self) -> str:
        """The bubblewrap path, or a ConfigError saying how to install it."""
        path = self.bwrap()
        if path is None:
            raise ConfigError(f"bubblewrap ({self.config.bwrap_path!r}) is not installed; run "
                              "`sudo apt-get install -y bubblewrap` or set security.bwrap_path")
        return path

    def workspace_root(self) -> Path:
        """Where per-run workspaces live: a folder the sandbox uid can traverse (0711), not list."""
        root = Path(tempfile.gettempdir()) / f"blacksoil-sandbox-{os.geteuid()}"
        root.mkdir(mode=0o711, exist_ok=True)
        st = root.lstat()
        if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid():
            raise ConfigError(f"{root} is not a folder owned by uid {os.geteuid()}; remove it and retry")
        root.chmod(0o711)
        return root

    def workspace_for(self, run_id: str) -> Path:
        """The workspace folder of one run (created on its first sandboxed call, kept between calls)."""
        if not run_id or "/" in run_id or run_id in (".", ".."):
            raise UserError(f"run id {run_id!r} cannot name a workspace folder; use letters, digits, '-' or '_'")
        return self.workspace_root() / run_id

    def run(self, spec: SandboxSpec) -> SandboxResult:
        """Run one call in a fresh sandbox and return its output and verdict."""
        bwrap = self.require()
        allowed = parse_allowlist(spec.allowed_hosts)
        if bool(spec.argv) == (spec.code is not None):
            raise UserError("a sandbox spec needs exactly one of argv or code; pass argv=(...) or code='...'")
        limits = self._limits(spec)
        fresh = spec.workspace is None
        ws = Path(tempfile.mkdtemp(prefix="call-", dir=self.workspace_root())) if fresh else Path(str(spec.workspace))
        _check_reachable(ws)
        try:
            return self._run_in(bwrap, spec, limits, ws, allowed)
        finally:
            if fresh:
                shutil.rmtree(ws, ignore_errors=True)

    def _limits(self, spec: SandboxSpec) -> Limits:
        c = self.config
        return Limits(cpu_s=spec.cpu_s or c.sandbox_cpu_s, memory_mb=spec.memory_mb or c.sandbox_memory_mb,
                      max_pids=spec.max_pids or c.sandbox_max_pids, file_mb=spec.file_mb or c.sandbox_file_mb,
                      open_files=spec.open_files or c.sandbox_open_files)

    def _run_in(
        self, bwrap: str, spec: SandboxSpec, limits: Limits, ws: Path, allowed: frozenset[tuple[str, int]]
    ) -> SandboxResult:
        ws.mkdir(parents=True, exist_ok=True)
        uid = sandbox_uid(ws)
        if uid is not None and ws.stat().st_uid != uid:
            os.chown(ws, uid, uid)  # only the folder itself: chown -R could be steered by planted hard links
        ws.chmod(0o700)
        layers = ["namespaces", "no_new_privs", "cap_drop", "rlimits"]
        keep: list[int] = []
        argv = [bwrap, *self._bwrap_args(ws, spec, limits)]
        if seccomp.supported():
            fd = seccomp.filter_fd()
            keep.append(fd)
            argv[1:1] = ["--seccomp", str(fd)]
            layers.append("seccomp")
        # pid 1 of the namespace is a shell that runs the tool as its child: it is under the same seccomp filter
        # (bwrap's own init is not), and the tool is not pid 1, whom the kernel's CPU-limit signals would spare.
        tool = spec.argv or (self.python, "-I", "-c", spec.code or "")
        proxy: EgressProxy | None = None
        if allowed:
            proxy = EgressProxy(Path(tempfile.mkdtemp(prefix="egress-", dir=self.workspace_root())), allowed, uid)
            argv += ["--ro-bind", str(proxy.folder), SOCKET_DIR, *_proxy_env()]  # after --clearenv
            argv += ["--", "/bin/sh", "-c", _RELAY_WRAPPER, "sh", RELAY, self.python, *tool]
            layers.append("egress-proxy")
        else:
            argv += ["--", "/bin/sh", "-c", '"$@"; exit $?', "sh", *tool]
        cgroup = CgroupLimiter(f"sbx-{os.getpid()}-{secrets.token_hex(4)}", limits)
        if cgroup.active:
            layers.append("cgroup")
        if uid is not None:
            layers.append(f"uid:{uid}")
        wall = spec.wall_s or self.config.sandbox_wall_s
        disk_limit = (spec.disk_mb or 4 * limits.file_mb) * 2**20
        start = time.perf_counter()
        try:
            proc = subprocess.Popen(
                argv, stdin=subprocess.PIPE if spec.stdin is not None else subprocess.DEVNULL,
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={"PATH": "/usr/bin:/bin"}, pass_fds=keep,
                start_new_session=True, preexec_fn=preexec(limits, uid, cgroup.procs_files()), cwd="/",
            )
        finally:
            for fd in keep:
                os.close(fd)
        try:
            out, err, truncated, end = self._collect(proc, spec.stdin, wall, lambda: _tree_size(ws) > disk_limit)
        finally:
            _kill_tree(proc)
            cgroup.close()
            if proxy is not None:
                proxy.close()
                shutil.rmtree(proxy.folder, ignore_errors=True)
        code = proc.returncode
        duration = (time.perf_counter() - start) * 1000
        verdict = _verdict(code, end == "timeout")
        if end == "disk_quota" or _tree_size(ws) > disk_limit:
            verdict = "disk_quota"
            _empty(ws)
        network = () if proxy is None else (*(f"allowed {t}" for t in proxy.connected),
                                            *(f"refused {t}" for t in proxy.refused))
        return SandboxResult(code, out, err, verdict, duration, truncated, tuple(layers), network)

    def _bwrap_args(self, ws: Path, spec: SandboxSpec, limits: Limits) -> list[str]:
        args = ["--unshare-all", "--unshare-user", "--disable-userns", "--die-with-parent", "--new-session",
                "--as-pid-1",
                "--cap-drop", "ALL", "--hostname", "sandbox", "--uid", "1000", "--gid", "1000",
                "--ro-bind", "/usr", "/usr"]
        for name in _TOP_LINKS:
            p = Path("/") / name
            if p.is_symlink():
                args += ["--symlink", os.readlink(p), str(p)]
            elif p.is_dir():
                args += ["--ro-bind", str(p), str(p)]
        for name in _ETC_FILES:
            if (Path("/etc") / name).exists():
                args += ["--ro-bind", f"/etc/{name}", f"/etc/{name}"]
        tmp_size = str(limits.file_mb * 2**20)
        args += ["--proc", "/proc", "--dev", "/dev", "--size", tmp_size, "--tmpfs", "/dev/shm",
                 "--size", tmp_size, "--tmpfs", "/tmp", "--remount-ro", "/dev",
                 "--bind", str(ws), WORKSPACE, "--chdir", WORKSPACE, "--clearenv",
                 "--setenv", "PATH", "/usr/local/bin:/usr/bin:/bin", "--setenv", "HOME", WORKSPACE,
                 "--setenv", "LANG", "C.UTF-8", "--setenv", "TMPDIR", "/tmp"]
        for k, v in spec.env.items():
            if not k or "=" in k or "\0" in k + v:
                raise UserError(f"environment variable name {k!r} is invalid; use NAME=value pairs without '='")
            args += ["--setenv", k, v]
        return args

    def _collect(
        self, proc: subprocess.Popen[bytes], stdin: str | None, wall: float, over_quota: Callable[[], bool]
    ) -> tuple[str, str, bool, str]:
        """Drain stdout/stderr (keeping the first `sandbox_output_kb` of each) until exit, timeout or quota.

        Returns (stdout, stderr, truncated, end) with end in exit | timeout | disk_quota."""
        cap = self.config.sandbox_output_kb * 1024
        bufs = {"out": bytearray(), "err": bytearray()}
        truncated = False
        sel = selectors.DefaultSelector()
        assert proc.stdout is not None and proc.stderr is not None
        sel.register(proc.stdout, selectors.EVENT_READ, "out")
        sel.register(proc.stderr, selectors.EVENT_READ, "err")
        if proc.stdin is not None:
            with contextlib.suppress(BrokenPipeError):
                proc.stdin.write((stdin or "").encode())
                proc.stdin.close()
        deadline = time.monotonic() + wall
        open_streams, end = 2, "exit"
        while open_streams or proc.poll() is None:
            left = deadline - time.monotonic()
            if left <= 0:
                end = "timeout"
                break
            if over_quota():
                end = "disk_quota"
                break
            if not open_streams:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(timeout=min(left, _QUOTA_POLL_S))
                continue
            for key, _ in sel.select(timeout=min(left, _QUOTA_POLL_S)):
                chunk = os.read(key.fd, 65536)
                if not chunk:
                    sel.unregister(key.fileobj)
                    open_streams -= 1
                    continue
                buf = bufs[key.data]
                room = cap - len(buf)
                if len(chunk) > room:
                    truncated = True
                buf += chunk[: max(room, 0)]
        sel.close()
        return _text(bufs["out"]), _text(bufs["err"]), truncated, end


def read_workspace_file(workspace: Path, relpath: str, max_bytes: int = 1 << 20) -> bytes:
    """Read a file the sandbox left in its workspace without following links out of it."""
    root = workspace.resolve()
    target = (root / relpath).resolve(strict=False)
    if root not in target.parents:
        raise UserError(f"{relpath!r} points outside the workspace {root}; read files inside it")
    fd_dir = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    try:
        parts = Path(relpath).parts
        for part in parts[:-1]:
            nxt = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd_dir)
            os.close(fd_dir)
            fd_dir = nxt
        try:
            fd = os.open(parts[-1], os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=fd_dir)
        except OSError as e:
            raise UserError(f"cannot read {relpath!r} from the workspace ({e.strerror}); links are not followed") from e
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise UserError(f"{relpath!r} is not a regular file; only plain files are read back")
            return os.read(fd, max_bytes)
        finally:
            os.close(fd)
    finally:
        os.close(fd_dir)


def _check_reachable(ws: Path) -> None:
    # The sandbox runs as another uid (when we are root): it must be able to traverse down to the workspace.
    if os.geteuid() != 0:
        return
    for parent in ws.resolve().parents:
        if not parent.stat().st_mode & stat.S_IXOTH:
            raise ConfigError(f"workspace {ws}: the sandbox user cannot enter {parent} (mode "
                              f"{oct(parent.stat().st_mode & 0o777)}); use Sandbox.workspace_for(run_id)")


def _verdict(code: int, timed_out: bool) -> str:
    if timed_out:
        return "timeout"
    if code == 0:
        return "ok"
    if code in (-signal.SIGXCPU, 128 + signal.SIGXCPU, -signal.SIGKILL, 128 + signal.SIGKILL):
        return "cpu_limit" if code in (-signal.SIGXCPU, 128 + signal.SIGXCPU) else "killed"
    return "error"


def _kill_tree(proc: subprocess.Popen[bytes]) -> None:
    # Killing bwrap kills the namespace's pid 1 (--die-with-parent), and with it every process inside.
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    for s in (proc.stdout, proc.stderr, proc.stdin):
        if s is not None:
            s.close()


def _tree_size(root: Path) -> int:
    total = 0
    stack = [root]
    while stack:
        d = stack.pop()
        try:
            with os.scandir(d) as it:
                for e in it:
                    st = e.stat(follow_symlinks=False)
                    if stat.S_ISDIR(st.st_mode):
                        stack.append(Path(e.path))
                    else:
                        total += st.st_blocks * 512
        except OSError:
            continue
    return total


def _empty(root: Path) -> None:
    for e in os.scandir(root):
        if e.is_dir(follow_symlinks=False):
            shutil.rmtree(e.path, ignore_errors=True)
        else:
            os.unlink(e.path)


def _text(b: bytearray) -> str:
    return bytes(b).decode("utf-8", errors="replace")
