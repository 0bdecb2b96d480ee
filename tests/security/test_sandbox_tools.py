"""The built-in sandboxed tools: Python, shell and file operations inside one run's workspace."""

from __future__ import annotations

import shutil
from collections.abc import Iterator

import pytest

from blacksoil.errors import UserError
from blacksoil.security.config import SecurityConfig
from blacksoil.security.sandbox import Sandbox
from blacksoil.security.sandbox_tools import Workspace, list_files, read_file, run_python, run_shell, write_file

SMALL = SecurityConfig(sandbox_cpu_s=2, sandbox_memory_mb=256, sandbox_max_pids=32, sandbox_file_mb=8,
                       sandbox_wall_s=10.0)


@pytest.fixture
def runs(bwrap: str, request: pytest.FixtureRequest) -> Iterator[tuple[Workspace, Workspace]]:
    sandbox = Sandbox(SMALL)
    a, b = (Workspace(sandbox, f"tools-{request.node.name}-{x}") for x in "ab")
    yield a, b
    for w in (a, b):
        shutil.rmtree(sandbox.workspace_for(w.run_id), ignore_errors=True)


def test_python_and_shell(runs: tuple[Workspace, Workspace]) -> None:
    ws, _ = runs
    assert run_python(ws, "print(6 * 7)")["stdout"] == "42\n"
    out = run_shell(ws, "echo hi > greeting.txt && cat greeting.txt && pwd")
    assert out["stdout"] == "hi\n/workspace\n" and out["verdict"] == "ok"


def test_file_tools_stay_in_the_workspace(runs: tuple[Workspace, Workspace]) -> None:
    ws, _ = runs
    assert write_file(ws, "notes/plan.txt", "check M3 bearings") == {"path": "notes/plan.txt", "bytes": 17}
    assert read_file(ws, "notes/plan.txt")["content"] == "check M3 bearings"
    assert list_files(ws) == [{"path": "notes/plan.txt", "bytes": 17}]
    # A link planted by code in the sandbox leads nowhere: the host's files are not in the sandbox.
    run_shell(ws, "ln -s /etc/hostname host.txt")
    with pytest.raises(UserError, match="cannot read"):
        read_file(ws, "host.txt")


def test_runs_are_isolated(runs: tuple[Workspace, Workspace]) -> None:
    a, b = runs
    write_file(a, "secret.txt", "run a only")
    with pytest.raises(UserError, match="No such file"):
        read_file(b, "secret.txt")
    assert list_files(b) == []


def test_bad_paths_are_refused(runs: tuple[Workspace, Workspace]) -> None:
    ws, _ = runs
    for bad in ("/etc/passwd", "../x", "a/../../b", ""):
        with pytest.raises(UserError, match="relative to the workspace"):
            write_file(ws, bad, "x")
