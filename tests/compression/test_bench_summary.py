"""The benchmark's arithmetic (reduction, loss gap, bytes at equal loss vs PowerSGD) and its JSON line.

The end-to-end run is marked slow: it trains 8 methods x 2 workloads in two gloo processes.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from blacksoil.compression.bench import bytes_to_reach, summarize, table_rows
from blacksoil.compression.runner import METHODS

KEYS = {
    "bytes_reduction_vs_allreduce", "final_loss_gap_rel", "bytes_ratio_vs_powersgd_at_equal_loss", "steps", "workload",
}


def _result(method: str, per_step: int, curve: list[tuple[int, float]]) -> dict[str, Any]:
    return {
        "workload": "w", "method": method, "steps": curve[-1][0], "payload_bytes": per_step * curve[-1][0],
        "ring_sent_bytes": float(per_step * curve[-1][0]), "loopback_bytes": None, "wall_s": 1.0,
        "final_loss": curve[-1][1], "train_loss": [], "density": None,
        "curve": [[s, v, per_step * s] for s, v in curve],
    }


def test_summary_compares_at_the_loss_both_reach() -> None:
    results = [
        _result("fp32_allreduce", 1000, [(0, 3.0), (10, 2.0), (20, 1.0)]),
        _result("ours_shared", 80, [(0, 3.0), (10, 1.5), (20, 1.005)]),
        # PowerSGD r1 ends worse (1.2): compared at 1.2, which ours reaches at step 20 (1600 B) vs its 20 (1000 B).
        _result("powersgd_r1", 50, [(0, 3.0), (10, 2.5), (20, 1.2)]),
        # r2 ends better (1.0): compared at ours' 1.005, reached by r2 at step 20 (1200 B).
        _result("powersgd_r2", 60, [(0, 3.0), (10, 1.9), (20, 1.0)]),
    ]
    s = summarize(results)
    assert set(s) == KEYS
    assert s["bytes_reduction_vs_allreduce"] == {"w": 0.92}
    assert s["final_loss_gap_rel"] == {"w": 0.005}
    assert s["bytes_ratio_vs_powersgd_at_equal_loss"] == {"w": round(1600 / 1000, 4)}
    assert s["steps"] == {"w": 20} and s["workload"] == ["w"]
    assert bytes_to_reach(results[2]["curve"], 0.5) is None
    assert len(table_rows(results)) == 4


@pytest.mark.slow
def test_quick_benchmark_prints_the_json_line(tmp_path: Path) -> None:
    cmd = [
        sys.executable, "-m", "blacksoil.cli", "bench", "compression", "--quick", "--lm-steps", "6",
        "--digits-steps", "12", "--plot-path", str(tmp_path / "p.png"),
    ]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=900, check=True).stdout
    line = json.loads(out.strip().splitlines()[-1])
    assert set(line) == KEYS and sorted(line["workload"]) == ["digits_mlp", "tiny_lm"]
    assert (tmp_path / "p.png").stat().st_size > 10_000
    assert len(METHODS) == 8
