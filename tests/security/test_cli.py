"""The security pillar's commands: policy dry-run, audit query and verification."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from blacksoil.cli import app
from blacksoil.config import settings
from blacksoil.security.audit import AuditLog

runner = CliRunner()


def test_check_explains_the_decision() -> None:
    r = runner.invoke(app, ["security", "check", "set_machine_state", "--args",
                            json.dumps({"machine_id": "M7", "state": "running"}), "--role", "plant_operator",
                            "--facts", json.dumps({"zones_under_maintenance": ["S3"], "machines_down": ["M7"]})])
    assert r.exit_code == 0 and "approval_required" in r.output and "mfg-restart-needs-approval" in r.output
    r = runner.invoke(app, ["security", "check", "disable_safety_interlock", "--role", "plant_operator"])
    assert "deny" in r.output and "no-safety-bypass" in r.output


def test_check_rejects_bad_json() -> None:
    r = runner.invoke(app, ["security", "check", "x", "--args", "[1]"])
    assert r.exit_code != 0 and "must be a JSON object" in str(r.exception)


def test_audit_query_and_verify(blacksoil_home: Path) -> None:
    s = settings()
    log = AuditLog(s.home / s.security.store_file)
    log.append("decision", "deny", run_id="run-cli", agent="op", tenant="plant", tool="dispatch_robot",
               arguments={"to_station": "S3", "api_key": "sk-abcdefghijklmnop"}, reasons=["forbidden"])
    r = runner.invoke(app, ["security", "audit", "--run", "run-cli", "--verify"], env={"COLUMNS": "250"})
    assert r.exit_code == 0, r.output
    assert "dispatch_robot" in r.output and "intact" in r.output and "sk-abc" not in r.output


@pytest.mark.parametrize("cmd", [["redteam", "sandbox", "--help"], ["redteam", "injection", "--help"]])
def test_redteam_help(cmd: list[str]) -> None:
    assert runner.invoke(app, cmd).exit_code == 0
