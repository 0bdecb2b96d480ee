"""Finished simulator runs on disk (JSON under `<home>/scheduling/sims/`) for the console and later comparison.

Series are thinned to a fixed number of points so a 24-hour run stays a small file.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import numpy as np

from blacksoil.scheduling.simulator import SimResult

__all__ = ["load_latest_sim_run", "save_sim_run", "sims_dir"]

_POINTS = 720


def sims_dir(home: Path) -> Path:
    """Folder of stored simulator runs."""
    return home / "scheduling" / "sims"


def _thin(a: np.ndarray) -> list[float]:
    step = max(1, len(a) // _POINTS)
    return [round(float(x), 4) for x in a[::step]]


def save_sim_run(home: Path, results: list[SimResult], *, accelerators: int, hours: float) -> Path:
    """Write one run (every policy's summary, thinned series, preemptions, final placements); returns the path."""
    run_id = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S")
    ours = next((r for r in results if r.policy == "unified"), results[-1])
    data: dict[str, Any] = {
        "run_id": run_id, "accelerators": accelerators, "hours": hours,
        "policies": {r.policy: {"summary": r.summary(), "series": {k: _thin(v) for k, v in r.series.items()}}
                     for r in results},
        "preemptions": [{**e, "policy": r.policy} for r in results for e in r.events],
        "placements": {"policy": ours.policy, "nodes": ours.placements},
    }
    path = sims_dir(home) / f"{run_id}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data))
    tmp.replace(path)
    return path


def load_latest_sim_run(home: Path) -> dict[str, Any] | None:
    """The newest stored run with the number of runs stored, or None."""
    files = sorted(sims_dir(home).glob("*.json"))
    for f in reversed(files):
        try:
            run: dict[str, Any] = json.loads(f.read_text())
        except (OSError, json.JSONDecodeError):
            continue
        run["count"] = len(files)
        return run
    return None
