"""Workloads for the simulator, derived from the shipped public traces (see data/ for attribution).

Serving demand replays the Azure LLM code trace; learning jobs take their arrival order, size, priority
(QoS) and duration from Alibaba's openb GPU pod list. Every scaling step is stated where it happens.
"""

from __future__ import annotations

import csv
import math
from importlib import resources
from pathlib import Path

import numpy as np

from blacksoil.errors import ConfigError
from blacksoil.scheduling.workloads import LearningJob

# Per-accelerator rates of an 8B-class model under vLLM on one modern accelerator (published vLLM
# benchmark ranges); only their ratio matters because demand is normalized to the cluster below.
PREFILL_TOKENS_PER_S = 10_000.0
DECODE_TOKENS_PER_S = 2_000.0
COPIES_PER_DEPLOYMENT = 256
"""A deployment serving thousands of replicas sees many users: it is the sum of this many copies of the
1-hour trace at independent offsets, not one copy scaled up (which would keep one user base's burstiness)."""
QOS_PRIORITY = {"LS": 300, "Guaranteed": 300, "Burstable": 200, "BE": 100}
DURATION_SCALE = 4.0
"""openb pods are short (median ~8 min); training jobs run longer: durations are ×4, clipped to 0.5-8 h."""


def data_file(name: str) -> Path:
    return Path(str(resources.files("blacksoil.scheduling") / "data" / name))


def _rows(name: str) -> list[dict[str, str]]:
    with data_file(name).open() as f:
        return list(csv.DictReader(line for line in f if not line.startswith("#")))


def azure_work_per_10s() -> np.ndarray:
    """Accelerator-seconds of work per 10 s bin of the Azure code trace (prefill + decode time)."""
    rows = _rows("azure_code_10s.csv")
    ctx = np.array([float(r["context_tokens"]) for r in rows])
    gen = np.array([float(r["generated_tokens"]) for r in rows])
    return ctx / PREFILL_TOKENS_PER_S + gen / DECODE_TOKENS_PER_S


def serving_demand(accelerators: int, hours: float, step_s: float, deployments: int, peak_fraction: float,
                   slo_utilization: float, seed: int) -> np.ndarray:
    """Offered load per deployment and step, in accelerators at 100 % utilization; shape (deployments, steps).

    Scaled so that the cluster-wide peak needs `peak_fraction` of the accelerators at the SLO utilization.
    A diurnal curve (35-100 %) with phases spread over 6 h (regions) modulates the tiled 1-hour trace."""
    if not 0 < peak_fraction < 1:
        raise ConfigError(f"serving peak fraction {peak_fraction} must be in (0, 1), e.g. 0.6")
    rng = np.random.default_rng(seed)
    base = azure_work_per_10s()
    steps = max(1, round(hours * 3600 / step_s))
    t10 = np.arange(math.ceil(steps * step_s / 10)) * 10.0
    out = np.zeros((deployments, steps))
    for d in range(deployments):
        offsets = rng.integers(0, base.size, COPIES_PER_DEPLOYMENT)
        idx = (np.arange(t10.size)[None, :] + offsets[:, None]) % base.size
        load10 = base[idx].sum(axis=0) / 10.0  # accelerator-seconds per second = busy accelerators
        # Aggregate to steps using the busiest 10 s bin: capacity must cover the burst, not the mean.
        per = max(1, round(step_s / 10))
        load = load10[: steps * per].reshape(steps, per).max(axis=1)
        phase = 2 * math.pi * d / max(deployments, 1) * (6 / 24)
        tt = np.arange(steps) * step_s / 86400.0
        diurnal = 0.35 + 0.65 * (0.5 - 0.5 * np.cos(2 * math.pi * tt + math.pi + phase))
        out[d] = load * diurnal
    peak = out.sum(axis=0).max()
    return out * (peak_fraction * accelerators * slo_utilization / peak)


def learning_jobs(accelerators: int, hours: float, load: float, seed: int,
                  checkpoint_interval_s: float = 1800.0, checkpoint_cost_s: float = 60.0) -> list[LearningJob]:
    """Jobs from the openb GPU pods, in trace order, until they offer `load` × the cluster's accelerator-hours.

    Size = num_gpu × 8 × max(1, accelerators // 2500) (one trace GPU becomes a node, more at scale);
    best-effort (BE) jobs are elastic down to half their size; QoS gives the priority. A third of the
    work is queued at time 0 (a cluster is never empty); the rest arrives over the first 80 % of the
    horizon with the trace's own inter-arrival gaps."""
    if load <= 0:
        raise ConfigError(f"learning load {load} must be positive, e.g. 1.2")
    rows = _rows("alibaba_openb_gpu_pods.csv")
    rng = np.random.default_rng(seed + 1)
    mult = 8 * max(1, accelerators // 2500)
    budget = load * accelerators * hours
    start = int(rng.integers(0, len(rows)))
    picked: list[tuple[dict[str, str], int, float]] = []
    total = 0.0
    k = 0
    while total < budget:
        r = rows[(start + k) % len(rows)]
        k += 1
        size = min(int(r["num_gpu"]) * mult, accelerators // 4)
        dur_h = float(np.clip(float(r["duration_s"]) * DURATION_SCALE / 3600.0, 0.5, 8.0))
        picked.append((r, size, dur_h))
        total += size * dur_h
    gaps = np.array([max(0.0, float(picked[i][0]["creation_time"]) - float(picked[i - 1][0]["creation_time"]))
                     if i else 0.0 for i in range(len(picked))])
    gaps = np.minimum(gaps, np.percentile(gaps, 99) if gaps.size > 1 else 0.0)  # wrap-around jumps
    arrivals = np.zeros(len(picked))
    cum_work = np.cumsum([size * dur for _, size, dur in picked])
    tail = np.flatnonzero(cum_work > budget / 3)
    if tail.size:
        cum = np.cumsum(gaps[tail])
        span = cum[-1] if cum[-1] > 0 else 1.0
        arrivals[tail] = cum / span * 0.8 * hours * 3600.0
    jobs = []
    for i, (r, size, dur_h) in enumerate(picked):
        elastic = r["qos"] == "BE" and size >= 16
        jobs.append(LearningJob(
            name=f"job-{i:05d}", size=size, work_acc_h=size * dur_h,
            min_size=size // 2 if elastic else None, priority=QOS_PRIORITY.get(r["qos"], 100),
            checkpoint_interval_s=checkpoint_interval_s, checkpoint_cost_s=checkpoint_cost_s,
            arrival_s=float(arrivals[i]),
        ))
    return jobs
