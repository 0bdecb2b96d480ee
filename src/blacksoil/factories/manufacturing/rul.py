"""Remaining-useful-life prediction on NASA C-MAPSS FD001: data loading, features, model, cache.

A gradient-boosting regressor on rolling sensor features, trained once on the 100 training engines
(piecewise-linear target capped at `rul_cap`) and cached under the home folder.
"""

from __future__ import annotations

import gzip
import hashlib
import pickle
import threading
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from importlib.metadata import version
from pathlib import Path
from typing import Any

import numpy as np
from threadpoolctl import threadpool_limits

from blacksoil.errors import NotFoundError
from blacksoil.factories.manufacturing.config import ManufacturingConfig

# Sensors that vary in FD001 (the others are constant there and carry no signal).
SENSORS: tuple[int, ...] = (2, 3, 4, 7, 8, 9, 11, 12, 13, 14, 15, 17, 20, 21)
SENSOR_NAMES: tuple[str, ...] = tuple(f"s{i}" for i in SENSORS)
_COLUMNS = ["unit", "cycle", "set1", "set2", "set3"] + [f"s{i}" for i in range(1, 22)]


@dataclass(frozen=True)
class Engine:
    """One engine's run: cycles and all 21 sensors, one row per cycle."""

    unit: int
    cycles: np.ndarray
    sensors: np.ndarray  # shape (n_cycles, 21), column j is sensor j+1

    def sensor(self, name: str) -> np.ndarray:
        """The history of one sensor (`s1` … `s21`)."""
        idx = _sensor_index(name)
        return self.sensors[:, idx]


def _sensor_index(name: str) -> int:
    if not (name.startswith("s") and name[1:].isdigit() and 1 <= int(name[1:]) <= 21):
        raise NotFoundError(f"sensor={name!r} does not exist; use one of s1 … s21 "
                            f"(informative: {', '.join(SENSOR_NAMES)})")
    return int(name[1:]) - 1


def _data_file(name: str) -> Path:
    return Path(str(resources.files("blacksoil.factories.manufacturing") / "data" / name))


def _read(name: str) -> np.ndarray:
    path = _data_file(name)
    opener = gzip.open if name.endswith(".gz") else open
    with opener(path, "rt") as f:
        text = f.read()
    # Whitespace split + one conversion is ~20x faster than np.loadtxt here.
    values = np.array(text.split(), dtype=float)
    width = len(text.splitlines()[0].split())
    return values.reshape(-1, width)


def _split_engines(rows: np.ndarray) -> dict[int, Engine]:
    out: dict[int, Engine] = {}
    for unit in np.unique(rows[:, 0]).astype(int):
        r = rows[rows[:, 0] == unit]
        out[int(unit)] = Engine(int(unit), r[:, 1].astype(int), r[:, 5:26])
    return out


@lru_cache(maxsize=1)
def train_engines() -> dict[int, Engine]:
    """The 100 FD001 training engines, run to failure."""
    return _split_engines(_read("train_FD001.txt.gz"))


@lru_cache(maxsize=1)
def test_engines() -> dict[int, Engine]:
    """The 100 FD001 test engines, cut short before failure."""
    return _split_engines(_read("test_FD001.txt.gz"))


@lru_cache(maxsize=1)
def test_true_rul() -> dict[int, int]:
    """True remaining life (cycles) after the last cycle of each test engine."""
    values = _read("RUL_FD001.txt").astype(int).ravel()
    return {i + 1: int(v) for i, v in enumerate(values)}


def features(sensors: np.ndarray, cycles: np.ndarray, window: int) -> np.ndarray:
    """Per-cycle features: raw informative sensors, rolling mean and std over `window`, and the cycle."""
    cols = [s - 1 for s in SENSORS]
    x = sensors[:, cols]
    n = len(x)
    csum = np.cumsum(np.vstack([np.zeros(len(cols)), x]), axis=0)
    csq = np.cumsum(np.vstack([np.zeros(len(cols)), x**2]), axis=0)
    idx = np.arange(1, n + 1)
    lo = np.maximum(0, idx - window)
    cnt = (idx - lo)[:, None]
    mean = (csum[idx] - csum[lo]) / cnt
    var = np.maximum((csq[idx] - csq[lo]) / cnt - mean**2, 0.0)
    return np.hstack([x, mean, np.sqrt(var), cycles[:, None].astype(float)])


class RulModel:
    """The trained regressor plus the feature settings it was trained with."""

    def __init__(self, model: Any, cap: int, window: int) -> None:
        self.model = model
        self.cap = cap
        self.window = window

    def predict_engine(self, engine: Engine, upto_cycle: int | None = None) -> float:
        """Predicted remaining cycles after `upto_cycle` (default: the engine's last cycle)."""
        n = len(engine.cycles) if upto_cycle is None else int(np.searchsorted(engine.cycles, upto_cycle, "right"))
        if n < 1:
            raise NotFoundError(f"cycle {upto_cycle} is before engine {engine.unit}'s first cycle; use a cycle >= 1")
        feats = features(engine.sensors[:n], engine.cycles[:n], self.window)
        with threadpool_limits(1):
            return float(np.clip(self.model.predict(feats[-1:])[0], 0.0, self.cap))

    def evaluate_test(self) -> dict[str, float]:
        """RMSE on the FD001 test set (last cycle of each engine), against raw and capped true RUL."""
        truth = test_true_rul()
        preds, raw = [], []
        for unit, eng in sorted(test_engines().items()):
            preds.append(self.predict_engine(eng))
            raw.append(truth[unit])
        p, t = np.array(preds), np.array(raw, dtype=float)
        return {
            "rmse_cycles": float(np.sqrt(np.mean((p - t) ** 2))),
            "rmse_capped_cycles": float(np.sqrt(np.mean((p - np.minimum(t, self.cap)) ** 2))),
            "engines": float(len(p)),
        }


def train(cap: int, window: int, trees: int) -> RulModel:
    """Fit the regressor on all training engines with the capped piecewise-linear target."""
    from sklearn.ensemble import HistGradientBoostingRegressor  # lazy: importing sklearn costs seconds

    xs, ys = [], []
    for eng in train_engines().values():
        xs.append(features(eng.sensors, eng.cycles, window))
        ys.append(np.minimum(eng.cycles.max() - eng.cycles, cap))
    model = HistGradientBoostingRegressor(max_iter=trees, learning_rate=0.05, max_leaf_nodes=31, random_state=0)
    # One OpenMP thread: on a shared 2-core box two spinning threads made training 6x slower (4.5 s vs 29 s).
    with threadpool_limits(1):
        model.fit(np.vstack(xs), np.concatenate(ys).astype(float))
    return RulModel(model, cap, window)


_lock = threading.Lock()
_loaded: dict[str, RulModel] = {}


def cache_path(home: Path, cfg: ManufacturingConfig) -> Path:
    """Where the trained model is cached under `home`: keyed by its settings and the scikit-learn version."""
    spec = f"{cfg.rul_cap}-{cfg.rul_window}-{cfg.rul_trees}-{version('scikit-learn')}"
    key = hashlib.sha256(spec.encode()).hexdigest()
    return home / "manufacturing" / f"rul_fd001_{key[:12]}.pkl"


def rul_model(home: Path, cfg: ManufacturingConfig) -> RulModel:
    """The cached model, trained on first use (~5 s) and pickled under the home folder."""
    path = cache_path(home, cfg)
    with _lock:
        if str(path) in _loaded:
            return _loaded[str(path)]
        if path.exists():
            with path.open("rb") as f:
                model: RulModel = pickle.load(f)
        else:
            model = train(cfg.rul_cap, cfg.rul_window, cfg.rul_trees)
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".tmp")
            with tmp.open("wb") as f:
                pickle.dump(model, f)
            tmp.replace(path)
        _loaded[str(path)] = model
        return model
