"""`blacksoil agent run|list|show|resume|approve|deny` against a scripted model; errors are one clear line."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from agent_helpers import TEST_CEDAR
from agent_scripted import ScriptedModel, serve
from typer.testing import CliRunner

from blacksoil.cli import app


@pytest.fixture
def spec(tmp_path: Path) -> Path:
    p = tmp_path / "clerk.yaml"
    p.write_text(yaml.safe_dump({"name": "clerk", "roles": ["clerk"], "tools": ["agent_test_tools"],
                                 "policies": [TEST_CEDAR]}))  # fmt: skip
    return p


def _last_json(out: str) -> dict[str, Any]:
    return json.loads(out.strip().splitlines()[-1])


def test_run_pause_show_approve(spec: Path, ledger: Path) -> None:
    script = [{"calls": [["transfer", {"amount": 700, "to": "acme"}]]}, {"content": "paid"}]
    runner = CliRunner()
    with serve(ScriptedModel(script)) as url:
        res = runner.invoke(app, ["agent", "run", str(spec), "pay acme 700", "--base-url", url, "--run-id", "cli-1"])
        assert res.exit_code == 0, res.output
        assert "blacksoil agent approve cli-1 s1c0" in res.output
        out = _last_json(res.output)
        assert (out["status"], out["pending"][0]["tool"]) == ("paused", "transfer")

        res = runner.invoke(app, ["agent", "list"])
        assert res.exit_code == 0 and "cli-1" in res.output and "paused" in res.output
        res = runner.invoke(app, ["agent", "show", "cli-1", "--json"])
        shown = json.loads(res.output)
        assert shown["calls"][0]["status"] == "awaiting_approval"

        res = runner.invoke(app, ["agent", "approve", "cli-1", "s1c0", "--by", "alice", "--base-url", url, "--json"])
        assert res.exit_code == 0, res.output
        assert (_last_json(res.output)["status"], _last_json(res.output)["answer"]) == ("completed", "paid")
    assert "700" in ledger.read_text()


def test_deny_without_resume_then_resume(spec: Path, ledger: Path) -> None:
    script = [{"calls": [["transfer", {"amount": 900, "to": "x"}]]}, {"content": "not paid"}]
    runner = CliRunner()
    with serve(ScriptedModel(script)) as url:
        runner.invoke(app, ["agent", "run", str(spec), "pay", "--base-url", url, "--run-id", "cli-2"])
        res = runner.invoke(
            app, ["agent", "deny", "cli-2", "s1c0", "--by", "bob", "--reason", "too much", "--no-resume"]
        )
        assert res.exit_code == 0 and _last_json(res.output)["approved"] is False
        res = runner.invoke(app, ["agent", "resume", "cli-2", "--base-url", url, "--json"])
        assert _last_json(res.output)["answer"] == "not paid"
    assert not ledger.exists()


def test_errors_are_one_line() -> None:
    res = subprocess.run([sys.executable, "-m", "blacksoil.cli", "agent", "run", "nope.yaml", "task"],
                         capture_output=True, text=True, timeout=120)  # fmt: skip
    assert res.returncode == 2
    assert "agent spec 'nope.yaml' not found" in res.stderr and "Traceback" not in res.stderr
    res = subprocess.run([sys.executable, "-m", "blacksoil.cli", "agent", "show", "no-such-run"],
                         capture_output=True, text=True, timeout=120)  # fmt: skip
    assert res.returncode == 2 and "run 'no-such-run' not found" in res.stderr
