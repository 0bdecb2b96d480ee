"""Tools marked sandboxed run in the security sandbox (bubblewrap), never in the agent's process."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from agent_helpers import TEST_CEDAR, clerk, team


def _results(rt: Any, run_id: str) -> list[str]:
    return [m["content"] for m in rt.store.messages(run_id) if m["role"] == "tool"]


def test_sandboxed_python_tool_sees_nothing_of_the_host(make_runtime: Any, ledger: Path) -> None:
    os.environ["AGENT_SECRET_TOKEN"] = "s3cret"
    try:
        rt, _ = make_runtime([{"calls": [["probe_host", {"path": "/etc/shadow"}]]}, {"content": "probed"}])
        r = rt.run("probe")
    finally:
        del os.environ["AGENT_SECRET_TOKEN"]
    seen = json.loads(_results(rt, r.run_id)[0])
    assert seen["exists"] is False and seen["network"] is False
    assert "AGENT_SECRET_TOKEN" not in seen["env"] and "AGENT_TEST_LEDGER" not in seen["env"]
    assert seen["cwd"] == "/workspace" and seen["pid"] != os.getpid()
    (execution,) = [e for e in rt.guard.security.audit.query(run_id=r.run_id) if e.kind == "execution"]
    assert execution.detail["sandboxed"] is True


def test_sandbox_toolset_workspace_persists_across_steps(make_runtime: Any, ledger: Path) -> None:
    spec = {"name": "coder", "roles": ["coder"], "tools": ["sandbox"], "policies": [TEST_CEDAR]}
    script = [
        {"calls": [["write_file", {"path": "notes/a.txt", "content": "hello"}]]},
        {"calls": [["run_shell", {"command": "cat notes/a.txt; cat /etc/shadow"}]]},
        {"content": "done"},
    ]
    rt, _ = make_runtime(script, team(spec))
    r = rt.run("write then read")
    assert r.status == "completed"
    written, shell = (json.loads(x) for x in _results(rt, r.run_id))
    assert written == {"path": "notes/a.txt", "bytes": 5}
    assert shell["stdout"] == "hello" and "No such file" in shell["stderr"]
    verdicts = [e.detail.get("sandbox_verdict") for e in rt.guard.security.audit.query(run_id=r.run_id)
                if e.kind == "execution"]  # fmt: skip
    assert verdicts == [None, "error"]  # write_file returns no verdict; the shell exited non-zero


def test_non_coder_gets_no_code_execution(make_runtime: Any, ledger: Path) -> None:
    script = [{"calls": [["run_python", {"code": "print(1)"}]]}, {"content": "refused"}]
    rt, model = make_runtime(script, team(clerk(roles=["planner"], tools=["sandbox"])))
    r = rt.run("hi")
    assert {t["function"]["name"] for t in model.requests[0]["tools"]} == {"read_file", "list_files"}
    assert "no policy permits" in _results(rt, r.run_id)[0]
