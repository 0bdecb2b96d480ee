"""Metrics over episodes, the `blacksoil score` command (table, HTML, JSON line last) and `bench factory`."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from blacksoil.agentscore.config import AgentscoreConfig
from blacksoil.agentscore.metrics import pass_at_k, summarize
from blacksoil.agentscore.runner import Episode
from blacksoil.cli import app


def _ep(task: str, trial: int, passed: bool, **kw: Any) -> Episode:
    base: dict[str, Any] = {"task_id": task, "suite": "s", "split": "test", "category": "c", "multi_step": False,
                            "trial": trial, "passed": passed, "reward": 1.0 if passed else 0.25, "checks": [],
                            "latency_s": 1.0, "cpu_s": 3600.0, "prompt_tokens": 1_000_000, "completion_tokens": 0,
                            "model_calls": 1, "tool_calls": 2, "tool_errors": 0, "step_latencies_s": [0.5]}
    return Episode(**(base | kw))


def test_pass_k_counts_a_task_only_if_all_trials_pass() -> None:
    eps = [_ep("a", 0, True), _ep("a", 1, True), _ep("b", 0, True), _ep("b", 1, False)]
    assert pass_at_k(eps) == 0.5
    s = summarize(eps, "m", AgentscoreConfig())
    assert s["completion_rate"] == 0.75 and s["pass_k"] == 0.5 and s["tasks"] == 2
    assert s["partial_credit"] == pytest.approx((3 + 0.25) / 4)
    assert s["policy_violations"] == 0


def test_cost_uses_the_price_table_and_cpu_price() -> None:
    cfg = AgentscoreConfig(model_prices={"m": (2.0, 8.0)}, price_cpu_usd_per_hour=0.5)
    s = summarize([_ep("a", 0, True, completion_tokens=500_000)], "m", cfg)
    assert s["cost_per_task_usd"] == pytest.approx(2.0 + 4.0 + 0.5)
    s2 = summarize([_ep("a", 0, True)], "other", cfg)
    assert s2["cost_per_task_usd"] == pytest.approx(cfg.price_prompt_usd_per_mtok + 0.5)


def test_score_oracle_prints_completion_one_and_writes_report(tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    doc = tmp_path / "docs" / "benchmarks.md"
    monkeypatch.setenv("BLACKSOIL_BENCH_DOC", str(doc))
    res = CliRunner().invoke(app, ["score", "--agent", "oracle", "--suite", "manufacturing", "--write-doc"])
    assert res.exit_code == 0, res.output
    last = json.loads(res.output.strip().splitlines()[-1])
    assert last["completion_rate"] == 1.0 and last["suite"] == "manufacturing" and last["split"] == "test"
    for key in ("tasks", "pass_k", "latency_p50_s", "latency_p95_s", "tokens_per_task", "cost_per_task_usd",
                "cpu_seconds_per_task"):
        assert key in last
    html = Path(last["report"])
    assert html.exists() and (html.parent / "categories.png").exists() and (html.parent / "pareto.png").exists()
    run = json.loads(Path(last["run"]).read_text())
    assert len(run["episodes"]) == last["tasks"] and run["episodes"][0]["trajectory"]["steps"]
    text = doc.read_text()
    assert "AgentScore manufacturing/test" in text and "img/agentscore_manufacturing_pareto.png" in text
    assert (doc.parent / "img" / "agentscore_manufacturing_categories.png").exists()


@pytest.mark.parametrize("suite", ["manufacturing", "tools-basic", "jobshop-quality"])
def test_score_null_is_near_zero_on_every_suite(suite: str) -> None:
    res = CliRunner().invoke(app, ["score", "--agent", "null", "--suite", suite, "--split", "dev"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.output.strip().splitlines()[-1])["completion_rate"] <= 0.05


def test_bad_suite_is_one_clear_line() -> None:
    out = subprocess.run([sys.executable, "-m", "blacksoil.cli", "score", "--agent", "null", "--suite", "nope"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 2
    assert "suite 'nope' does not exist" in out.stderr and "Traceback" not in out.stderr


def test_bench_factory_quick_reports_rmse_and_gaps(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    res = CliRunner().invoke(app, ["bench", "factory", "--quick"])
    assert res.exit_code == 0, res.output
    last = json.loads(res.output.strip().splitlines()[-1])
    assert 10 < last["rul_rmse_cycles"] < 25
    assert set(last["jobshop_ratio"]) == {"ft06", "la01", "la02"}
    assert all(1.0 <= r < 1.5 for r in last["jobshop_ratio"].values())


def test_pareto_front_keeps_only_undominated_runs() -> None:
    from blacksoil.agentscore.report import pareto_front

    pts = [(0.0, 0.0), (5.0, 0.0), (1.0, 1.0), (2.0, 0.5), (0.5, 0.4)]
    assert pareto_front(pts) == [(0.0, 0.0), (0.5, 0.4), (1.0, 1.0)]



BUSY_CHILD = "import time\nt = time.process_time()\nwhile time.process_time() - t < 0.5:\n    pass\ninput()"


def test_cpu_seconds_counts_child_processes() -> None:
    from blacksoil.agentscore.runner import cpu_seconds

    before = cpu_seconds()
    child = subprocess.Popen([sys.executable, "-c", BUSY_CHILD], stdin=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while cpu_seconds() - before < 0.4 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert cpu_seconds() - before >= 0.4
    finally:
        child.communicate(b"\n", timeout=30)
