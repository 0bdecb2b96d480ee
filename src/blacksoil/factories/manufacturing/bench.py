"""The factory benchmark: RUL model RMSE on the FD001 test set and CP-SAT makespan ÷ best known.

Reported through blacksoil.benchlog so the numbers land in docs/benchmarks.md beside the published figures.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rich.progress import Progress

from blacksoil.factories.manufacturing.config import ManufacturingConfig

from . import jobshop, rul

DEFAULT_INSTANCES = ("ft06", "la01", "la02", "la03", "la04", "la05", "ft10", "abz5", "orb01", "ta01")
PUBLISHED_RUL = "CNN/LSTM literature 12–16; plain gradient boosting 18–22"


def run(home: Path, cfg: ManufacturingConfig, instances: Sequence[str] = DEFAULT_INSTANCES,
        time_limit_s: float = 10.0) -> dict[str, Any]:
    """Train (or load from `home`) the RUL model, score it, solve each instance; returns rows and the result dict."""
    t0 = time.perf_counter()
    cached = rul.cache_path(home, cfg).exists()
    model = rul.rul_model(home, cfg)
    train_s = time.perf_counter() - t0
    ev = model.evaluate_test()
    rows: list[list[Any]] = [
        ["RUL FD001 test RMSE (cycles)", round(ev["rmse_cycles"], 2), PUBLISHED_RUL],
        [f"RUL FD001 test RMSE vs true RUL capped at {cfg.rul_cap}", round(ev["rmse_capped_cycles"], 2),
         "(common in papers that cap the target)"],
    ]
    gaps: dict[str, float] = {}
    with Progress() as bar:
        job = bar.add_task("CP-SAT job shop", total=len(instances))
        for name in instances:
            inst = jobshop.classic(name)
            s = jobshop.solve(inst, time_limit_s, cfg.jobshop_workers)
            assert jobshop.validate(inst, s.starts) == s.makespan
            best = inst.best_known or s.makespan
            gaps[name] = round(s.makespan / best, 4)
            size = f"{len(inst.durations)}x{inst.n_machines}"
            rows.append([f"job shop {name} ({size}) makespan ÷ best known", gaps[name],
                         f"{s.makespan} vs {best}, {s.status}, {s.wall_s:.1f} s"])
            bar.advance(job)
    result = {
        "rul_rmse_cycles": round(ev["rmse_cycles"], 3),
        "rul_rmse_capped_cycles": round(ev["rmse_capped_cycles"], 3),
        "rul_train_or_load_s": round(train_s, 2),
        "rul_model_cached": cached,
        "jobshop_time_limit_s": time_limit_s,
        "jobshop_workers": cfg.jobshop_workers,
        "jobshop_ratio": gaps,
        "jobshop_mean_ratio": round(sum(gaps.values()) / max(1, len(gaps)), 4),
    }
    return {"rows": rows, "result": result}
