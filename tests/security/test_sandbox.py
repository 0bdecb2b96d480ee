"""Functional tests of the real bubblewrap sandbox: it runs tools, keeps a run's workspace, enforces limits.

The attack catalogue (one test per attack) lives in test_sandbox_attacks.py.
"""

from __future__ import annotations

import ast
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from blacksoil.errors import ConfigError, UserError
from blacksoil.security import seccomp
from blacksoil.security.config import SecurityConfig
from blacksoil.security.sandbox import Sandbox, SandboxSpec, read_workspace_file

SMALL = SecurityConfig(sandbox_cpu_s=2, sandbox_memory_mb=256, sandbox_max_pids=32, sandbox_file_mb=8,
                       sandbox_wall_s=5.0, sandbox_output_kb=4)


@pytest.fixture(scope="module")
def sandbox(bwrap: str) -> Sandbox:
    return Sandbox(SMALL)


def test_runs_python_and_shell(sandbox: Sandbox) -> None:
    r = sandbox.run(SandboxSpec(code="import sys; print(sum(range(10))); sys.exit(3)"))
    assert r.stdout == "45\n" and r.exit_code == 3 and r.verdict == "error"
    r = sandbox.run(SandboxSpec(argv=("/bin/sh", "-c", "echo $HOME; pwd; id -u"), env={"GREETING": "hi"}))
    assert r.ok and r.stdout.split() == ["/workspace", "/workspace", "1000"]
    assert "seccomp" in r.layers or not seccomp.supported()


def test_stdin_and_env(sandbox: Sandbox) -> None:
    r = sandbox.run(SandboxSpec(code="import os, sys; print(os.environ['GREETING'], sys.stdin.read())",
                                env={"GREETING": "hello"}, stdin="plant"))
    assert r.stdout == "hello plant\n"


@pytest.fixture
def ws(sandbox: Sandbox, request: pytest.FixtureRequest) -> Iterator[Path]:
    path = sandbox.workspace_for(f"test-{request.node.name}-{os.getpid()}")
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_workspace_persists_between_calls(sandbox: Sandbox, ws: Path) -> None:
    assert sandbox.run(SandboxSpec(code="open('notes.txt', 'w').write('rpm=1200')", workspace=ws)).ok
    r = sandbox.run(SandboxSpec(argv=("/bin/cat", "notes.txt"), workspace=ws))
    assert r.stdout == "rpm=1200"
    assert read_workspace_file(ws, "notes.txt") == b"rpm=1200"


def test_fresh_workspace_is_removed(sandbox: Sandbox) -> None:
    before = set(sandbox.workspace_root().iterdir())
    r = sandbox.run(SandboxSpec(code="import os; print(os.listdir('.'))"))
    assert r.stdout == "[]\n" and set(sandbox.workspace_root().iterdir()) == before


def test_wall_timeout_kills_the_tree(sandbox: Sandbox) -> None:
    r = sandbox.run(SandboxSpec(argv=("/bin/sh", "-c", "sleep 30 & sleep 30; echo never"), wall_s=1.0))
    assert r.verdict == "timeout" and "never" not in r.stdout and r.duration_ms < 4000


def test_cpu_limit_kills_a_spinner(bwrap: str) -> None:
    # A generous wall limit so that even a loaded machine lets the 1 s of CPU run out first.
    r = Sandbox(SMALL).run(SandboxSpec(code="while True: pass", cpu_s=1, wall_s=60.0))
    assert r.verdict == "cpu_limit", r


def test_output_is_capped(sandbox: Sandbox) -> None:
    r = sandbox.run(SandboxSpec(code="print('z' * 100000)"))
    assert r.truncated and len(r.stdout) == 4 * 1024


def test_bad_specs_are_refused(sandbox: Sandbox) -> None:
    with pytest.raises(UserError, match="exactly one of argv or code"):
        sandbox.run(SandboxSpec())
    with pytest.raises(UserError, match="allowed host"):
        sandbox.run(SandboxSpec(argv=("/bin/true",), allowed_hosts=("http://pypi.org/",)))
    with pytest.raises(UserError, match="environment variable name"):
        sandbox.run(SandboxSpec(argv=("/bin/true",), env={"A=B": "x"}))


def test_unreachable_workspace_names_the_fix(sandbox: Sandbox, tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("only root drops to a sandbox uid that must traverse the path")
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o700)
    with pytest.raises(ConfigError, match="workspace_for"):
        sandbox.run(SandboxSpec(argv=("/bin/true",), workspace=locked / "ws"))


def test_missing_bubblewrap_names_the_fix() -> None:
    with pytest.raises(ConfigError, match="apt-get install -y bubblewrap"):
        Sandbox(SecurityConfig(bwrap_path="/nonexistent/bwrap")).run(SandboxSpec(argv=("/bin/true",)))


def test_read_workspace_file_refuses_links_and_escapes(sandbox: Sandbox, ws: Path, tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_text("s3cret")
    sandbox.run(SandboxSpec(code="import os; os.mkdir('d'); open('d/ok', 'w').write('fine')", workspace=ws))
    (ws / "link").symlink_to(secret)
    assert read_workspace_file(ws, "d/ok") == b"fine"
    for bad in ("link", "../secret", "/etc/passwd", "d"):
        with pytest.raises(UserError):
            read_workspace_file(ws, bad)


def test_seccomp_filter_semantics(sandbox: Sandbox) -> None:
    if not seccomp.supported():
        pytest.skip("the seccomp filter is x86_64 only")
    code = """
import ctypes, os
libc = ctypes.CDLL(None, use_errno=True)
def call(nr, *a):
    r = libc.syscall(ctypes.c_long(nr), *[ctypes.c_long(x) for x in a]); return r, ctypes.get_errno()
print((call(101, 0, 0, 0, 0), call(435, 0, 0), call(272, 0x10000000), call(39)))
pid = os.fork()
if pid == 0: os._exit(7)
print(os.waitpid(pid, 0)[1] >> 8)
"""
    r = sandbox.run(SandboxSpec(code=code))
    first, second = r.stdout.splitlines()
    ptrace, clone3, unshare, getpid = ast.literal_eval(first)
    assert ptrace == (-1, 1) and clone3 == (-1, 38) and unshare == (-1, 1) and getpid[0] > 0
    assert second == "7"  # plain fork (clone without namespace flags) still works


def test_every_denied_syscall_is_refused(sandbox: Sandbox) -> None:
    # Checks each jump of the hand-assembled filter: every listed call answers EPERM before the kernel sees it.
    if not seccomp.supported():
        pytest.skip("the seccomp filter is x86_64 only")
    numbers = sorted(seccomp.DENIED_X86_64.values())
    code = f"""
import ctypes
libc = ctypes.CDLL(None, use_errno=True)
out = []
for nr in {numbers!r}:
    ctypes.set_errno(0)
    r = libc.syscall(ctypes.c_long(nr), *[ctypes.c_long(0)] * 6)
    out.append((nr, r, ctypes.get_errno()))
print(out)
"""
    r = sandbox.run(SandboxSpec(code=code))
    results = ast.literal_eval(r.stdout)
    assert [nr for nr, _, _ in results] == numbers
    assert [(nr, rc, err) for nr, rc, err in results if (rc, err) != (-1, 1)] == []
