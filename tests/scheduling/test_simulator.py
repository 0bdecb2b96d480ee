"""Simulator: deterministic for a seed, and the policies rank as designed on a small real-trace scenario."""

from __future__ import annotations

import pytest

from blacksoil.errors import ConfigError
from blacksoil.scheduling.config import SchedulingConfig
from blacksoil.scheduling.simulator import build_scenario, simulate

TIMING_KEYS = {"decision_p50_ms", "decision_p99_ms", "wall_s"}


def _strip(d: dict) -> dict:
    return {k: v for k, v in d.items() if k not in TIMING_KEYS}


@pytest.fixture(scope="module")
def scenario():  # type: ignore[no-untyped-def]
    return build_scenario(1024, 4, SchedulingConfig(seed=3))


def test_same_seed_same_result(scenario) -> None:  # type: ignore[no-untyped-def]
    a = simulate(scenario, "unified").summary()
    b = simulate(build_scenario(1024, 4, SchedulingConfig(seed=3)), "unified").summary()
    assert _strip(a) == _strip(b)
    c = simulate(build_scenario(1024, 4, SchedulingConfig(seed=4)), "unified").summary()
    assert _strip(a) != _strip(c)


def test_policies_on_a_small_cluster(scenario) -> None:  # type: ignore[no-untyped-def]
    res = {p: simulate(scenario, p) for p in ("static", "kueue", "unified")}
    u = res["unified"]
    assert u.slo_attainment >= 0.995
    # Sharing beats fixed pools; checkpoint-before-stop loses less than Kueue's kill-and-requeue.
    assert u.goodput_acc_hours > 1.05 * res["static"].goodput_acc_hours
    assert u.lost_work_frac < res["kueue"].lost_work_frac
    assert u.lost_work_frac <= 0.01
    assert 0 < u.utilization <= 1
    assert u.series["serving"].shape == u.series["learning"].shape


def test_bad_input_names_the_value() -> None:
    with pytest.raises(ConfigError, match="accelerators=1001"):
        build_scenario(1001, 1)
    with pytest.raises(ConfigError, match="hours=0"):
        build_scenario(1024, 0)


def test_cli_prints_the_json_line_last(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import json

    from typer.testing import CliRunner

    from blacksoil.cli import app

    monkeypatch.setenv("BLACKSOIL_BENCH_DOC", str(tmp_path / "benchmarks.md"))
    res = CliRunner().invoke(app, ["sim", "--accelerators", "256", "--hours", "1", "--write-doc"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.output.strip().splitlines()[-1])
    assert set(out["unified"]) == {"slo_attainment", "goodput_acc_hours", "lost_work_frac", "utilization",
                                   "decision_p99_ms"}
    assert "goodput_ratio_vs_static" in out and "goodput_ratio_vs_kueue" in out and out["sim_wall_s"] > 0
    assert (tmp_path / "img" / "sim_allocation.png").stat().st_size > 1000
    assert "sim_slo_goodput.png" in (tmp_path / "benchmarks.md").read_text()
