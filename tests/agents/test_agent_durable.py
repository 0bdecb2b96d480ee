"""Durable sessions: a run SIGKILLed mid-way resumes from its last completed step, never repeating a side effect.

The agent runs in a real subprocess (`python -m blacksoil.cli agent run …`) that the test kills with SIGKILL.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml
from agent_helpers import HERE, TEST_CEDAR
from agent_scripted import ScriptedModel, serve

from blacksoil.agents.loop import AgentRuntime
from blacksoil.agents.model import ModelClient
from blacksoil.agents.spec import load_team
from blacksoil.agents.store import RunStore
from blacksoil.config import settings


def _start_and_kill(tmp_path: Path, ledger: Path, script: list[dict[str, Any]], marker: Path, run_id: str) -> tuple:
    spec = tmp_path / "clerk.yaml"
    spec.write_text(yaml.safe_dump({"name": "clerk", "roles": ["clerk"], "tools": ["agent_test_tools"],
                                    "policies": [TEST_CEDAR]}))  # fmt: skip
    model = ScriptedModel(script)
    server = serve(model)
    url = server.__enter__()
    env = {
        **os.environ,
        "AGENT_TEST_LEDGER": str(ledger),
        "PYTHONPATH": f"{HERE}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "blacksoil.cli", "agent", "run", str(spec), "do the ledger work", "--base-url", url,
         "--run-id", run_id, "--json"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 90
        while not marker.exists():
            assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else "agent exited early"
            assert time.monotonic() < deadline, "the agent never reached the slow tool"
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
    return spec, url, server, model


def _resume(spec: Path, url: str, run_id: str) -> Any:
    s = settings()
    store = RunStore(s.home / s.agents.store_file)
    rt = AgentRuntime(load_team(spec), model=ModelClient(url, retries=0), store=store, config=s.agents)
    try:
        before = store.get_run(run_id)
        return before, rt.resume(run_id), store.messages(run_id)
    finally:
        rt.close()
        store.close()


def test_sigkill_mid_tool_resumes_without_repeating_side_effects(tmp_path: Path, ledger: Path) -> None:
    script = [
        {"calls": [["record_entry", {"text": "first"}]]},
        {"calls": [["slow_entry", {"text": "second", "seconds": 60}]]},
        {"calls": [["record_entry", {"text": "third"}]]},
        {"content": "all recorded"},
    ]
    spec, url, server, _ = _start_and_kill(tmp_path, ledger, script, Path(str(ledger) + ".slow"), "killed-1")
    try:
        before, result, messages = _resume(spec, url, "killed-1")
    finally:
        server.__exit__(None, None, None)
    assert before.status == "running" and before.steps == 2  # the kill left it mid-step
    assert (result.status, result.reason, result.answer) == ("completed", "answer", "all recorded")
    # first ran once before the kill, second (interrupted, state-changing, not idempotent) was NOT rerun
    assert ledger.read_text().splitlines() == ["first", "second", "third"]
    interrupted = next(m for m in messages if m["role"] == "tool" and m["tool_call_id"] == "s2c0")
    assert "interrupted" in interrupted["content"] and "not retried" in interrupted["content"]
    assert result.steps == 4  # two steps before the kill, two after: no step was repeated


def test_idempotent_tool_is_retried_with_the_same_key(tmp_path: Path, ledger: Path) -> None:
    script = [{"calls": [["keyed_entry", {"text": "pay once"}]]}, {"content": "paid"}]
    spec, url, server, _ = _start_and_kill(tmp_path, ledger, script, Path(str(ledger) + ".keyed"), "killed-2")
    try:
        _, result, _ = _resume(spec, url, "killed-2")
    finally:
        server.__exit__(None, None, None)
    assert (result.status, result.answer) == ("completed", "paid")
    assert ledger.read_text().splitlines() == ["killed-2:s1c0 pay once"]  # retried, deduplicated by its key


def test_completed_runs_are_not_rerun(tmp_path: Path, ledger: Path, make_runtime: Any) -> None:
    rt, model = make_runtime([{"calls": [["record_entry", {"text": "x"}]]}, {"content": "done"}])
    r = rt.run("once")
    n = len(model.requests)
    again = rt.resume(r.run_id)
    assert (again.status, again.answer, len(model.requests)) == ("completed", "done", n)
    assert ledger.read_text() == "x\n"


def test_store_is_wal_and_survives_reopen(store: RunStore, make_runtime: Any, ledger: Path) -> None:
    rt, _ = make_runtime([{"content": "ok"}])
    r = rt.run("hi")
    mode = store._conn().execute("PRAGMA journal_mode").fetchone()[0]
    assert mode == "wal"
    reopened = RunStore(store.path)
    assert reopened.get_run(r.run_id).answer == "ok"
    reopened.close()


def test_a_live_driver_keeps_others_out(store: RunStore, make_runtime: Any, ledger: Path) -> None:
    import pytest

    from blacksoil.errors import UserError

    rt, _ = make_runtime([{"calls": [["transfer", {"amount": 500, "to": "x"}]]}, {"content": "ok"}])
    r = rt.run("pay")  # paused, owned by this process
    with store.transaction():
        store._conn().execute(
            "UPDATE runs SET status='running', owner=? WHERE run_id=?", (f"{os.uname()[1]}:1", r.run_id)
        )
    with pytest.raises(UserError, match="being driven by process"):
        rt.resume(r.run_id)  # pid 1 is alive: another driver holds the run
    with store.transaction():
        store._conn().execute("UPDATE runs SET owner=? WHERE run_id=?", (f"{os.uname()[1]}:999999999", r.run_id))
    assert rt.resume(r.run_id).status == "paused"  # a dead owner (a killed process) is taken over
