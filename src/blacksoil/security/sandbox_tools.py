"""Built-in sandboxed tools for agents: run Python, run a shell command, write, read and list workspace files.

Each is a typed function taking a `Workspace` first (the plant tools' pattern), so a runtime binds it per run.

What this protects, and what it does not (tests in tests/security/test_sandbox_tools.py):
- Protects: every call, file operations included, runs in the sandbox of blacksoil.security.sandbox, confined to
  the run's own workspace folder — test_file_tools_stay_in_the_workspace.
- Protects: runs do not see each other's files (one folder and one uid per run) — test_runs_are_isolated.
- Protects: paths are checked before anything runs (no absolute paths, no `..`) — test_bad_paths_are_refused.
- Does not protect: the workspace content from the run itself (code the agent runs may delete its own files).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any

from blacksoil.errors import UserError
from blacksoil.security.sandbox import Sandbox, SandboxResult, SandboxSpec

__all__ = ["SANDBOX_TOOLS", "Workspace", "list_files", "read_file", "run_python", "run_shell", "write_file"]

_MAX_FILE_CHARS = 200_000


@dataclass(frozen=True)
class Workspace:
    """The sandbox and the run whose workspace folder the tools act in."""

    sandbox: Sandbox
    run_id: str
    allowed_hosts: tuple[str, ...] = ()
    """host[:port] the tools may reach through the egress proxy (the tool's declared hosts); none by default."""

    def run(self, spec: SandboxSpec) -> SandboxResult:
        folder = self.sandbox.workspace_for(self.run_id)
        return self.sandbox.run(SandboxSpec(argv=spec.argv, code=spec.code, workspace=folder, env=spec.env,
                                            stdin=spec.stdin, allowed_hosts=self.allowed_hosts))


def _result(r: SandboxResult) -> dict[str, Any]:
    return {"exit_code": r.exit_code, "stdout": r.stdout, "stderr": r.stderr, "verdict": r.verdict,
            "truncated": r.truncated}


def _relative(path: str) -> str:
    p = PurePosixPath(path)
    if not path or p.is_absolute() or ".." in p.parts or "\0" in path:
        raise UserError(f"path {path!r} must be relative to the workspace without '..'; e.g. 'data/out.csv'")
    return str(p)


def run_python(ws: Workspace, code: str) -> dict[str, Any]:
    """Run Python code in the sandbox (no network, the run's workspace as current folder).

    Args:
        code: the Python program to run; print what you want to see
    """
    return _result(ws.run(SandboxSpec(code=code)))


def run_shell(ws: Workspace, command: str) -> dict[str, Any]:
    """Run a shell command in the sandbox (no network, the run's workspace as current folder).

    Args:
        command: the /bin/sh command line
    """
    return _result(ws.run(SandboxSpec(argv=("/bin/sh", "-c", command))))


def write_file(ws: Workspace, path: str, content: str) -> dict[str, Any]:
    """Write a text file in the run's workspace (created with its folders, replaced if it exists).

    Args:
        path: file path relative to the workspace, such as notes/plan.txt
        content: the text to write
    """
    rel = _relative(path)
    code = ("import os, sys\np = " + json.dumps(rel) + "\nd = os.path.dirname(p)\nif d: os.makedirs(d, exist_ok=True)\n"
            "open(p, 'w').write(sys.stdin.read())\nprint(os.path.getsize(p))")
    r = ws.run(SandboxSpec(code=code, stdin=content))
    if not r.ok:
        raise UserError(f"cannot write {rel!r}: {r.stderr.strip().splitlines()[-1] if r.stderr.strip() else r.verdict}")
    return {"path": rel, "bytes": int(r.stdout.strip() or 0)}


def read_file(ws: Workspace, path: str) -> dict[str, Any]:
    """Read a text file from the run's workspace.

    Args:
        path: file path relative to the workspace, such as notes/plan.txt
    """
    rel = _relative(path)
    code = f"import sys\nsys.stdout.write(open({json.dumps(rel)}, errors='replace').read({_MAX_FILE_CHARS + 1}))"
    r = ws.run(SandboxSpec(code=code))
    if not r.ok:
        raise UserError(f"cannot read {rel!r}: {r.stderr.strip().splitlines()[-1] if r.stderr.strip() else r.verdict}; "
                        "list the workspace with list_files")
    return {"path": rel, "content": r.stdout[:_MAX_FILE_CHARS], "truncated": len(r.stdout) > _MAX_FILE_CHARS}


def list_files(ws: Workspace) -> list[dict[str, Any]]:
    """List the files in the run's workspace with their sizes in bytes."""
    code = ("import json, os\nout = []\nfor root, dirs, files in os.walk('.'):\n"
            "    for f in files:\n        p = os.path.join(root, f)[2:]\n"
            "        out.append({'path': p, 'bytes': os.lstat(p).st_size})\nprint(json.dumps(sorted(out, key=str)))")
    r = ws.run(SandboxSpec(code=code))
    if not r.ok:
        raise UserError(f"cannot list the workspace: {r.stderr.strip() or r.verdict}")
    files: list[dict[str, Any]] = json.loads(r.stdout)
    return files


SANDBOX_TOOLS: tuple[Callable[..., Any], ...] = (run_python, run_shell, write_file, read_file, list_files)
