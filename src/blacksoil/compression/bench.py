"""`blacksoil bench compression`: every method on both workloads in two gloo processes, then table, plot, JSON.

The processes run in the background while a rich progress bar follows rank 0; results are compared here.
"""

from __future__ import annotations

import json
import queue as queue_mod
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from blacksoil.benchlog import Destination
from blacksoil.compression.config import CompressionConfig
from blacksoil.compression.runner import METHODS, RunSpec, worker
from blacksoil.distributed import Rendezvous
from blacksoil.errors import InternalError

OURS = "ours_shared"


@dataclass(frozen=True)
class BenchPlan:
    """Steps per workload, evaluation spacing and the settings of our hook."""

    steps: dict[str, int]
    config: CompressionConfig
    topk_density: float = 0.01

    @classmethod
    def make(cls, quick: bool, config: CompressionConfig) -> BenchPlan:
        """Quick: a smoke run of a few minutes on a loaded 2-core machine; full: long enough to converge."""
        steps = {"tiny_lm": 40, "digits_mlp": 100} if quick else {"tiny_lm": 300, "digits_mlp": 300}
        return cls(steps, config)


def run_all(plan: BenchPlan, timeout_s: float = 3600.0) -> list[dict[str, Any]]:
    """Spawn the two ranks, follow rank 0's progress, return the per-(workload, method) results."""
    import torch.multiprocessing as mp
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    spec = RunSpec(
        workloads=list(plan.steps), steps=dict(plan.steps), methods=list(METHODS),
        eval_every={w: max(1, s // 15) for w, s in plan.steps.items()},
        config=plan.config.model_dump(), topk_density=plan.topk_density,
    )
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    with tempfile.TemporaryDirectory(prefix="blacksoil-compression-") as tmp:
        out = str(Path(tmp) / "results.json")
        rdv = Rendezvous.local(world_size=2)
        # Processes of our own rather than distributed.spawn: rank 0's progress queue drives the bars meanwhile.
        procs = [ctx.Process(target=worker, args=(r, rdv, spec, out, q if r == 0 else None)) for r in range(2)]
        for p in procs:
            p.start()
        deadline = time.monotonic() + timeout_s
        with Progress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn()
        ) as progress:
            tasks = {
                (w, m): progress.add_task(f"{w} · {m}", total=s) for w, s in plan.steps.items() for m in METHODS
            }
            while any(p.is_alive() for p in procs):
                if time.monotonic() > deadline:
                    for p in procs:
                        p.kill()
                    raise InternalError(f"compression benchmark exceeded {timeout_s:.0f} s; ranks killed")
                try:
                    w, m, step = q.get(timeout=0.5)
                    progress.update(tasks[(w, m)], completed=step)
                except queue_mod.Empty:
                    pass
                if any(p.exitcode not in (None, 0) for p in procs):
                    for p in procs:
                        p.kill()
                    raise InternalError(
                        f"a benchmark rank failed (exit codes {[p.exitcode for p in procs]}); see its traceback above"
                    )
        for p in procs:
            p.join()
        if not Path(out).exists():
            raise InternalError("the benchmark ranks ended without writing results")
        results: list[dict[str, Any]] = json.loads(Path(out).read_text())
    return results


def bytes_to_reach(curve: list[list[float]], loss: float) -> float | None:
    """Cumulative payload bytes at the first evaluation whose held-out loss is <= `loss` (None: never)."""
    for _, value, nbytes in curve:
        if value <= loss:
            return float(nbytes)
    return None


def summarize(results: list[dict[str, Any]]) -> dict[str, Any]:
    """The JSON line: per workload, ours vs fp32 allreduce (bytes, loss) and vs PowerSGD at equal loss."""
    by = {(r["workload"], r["method"]): r for r in results}
    workloads = sorted({r["workload"] for r in results})
    reduction, gap, ratio, steps = {}, {}, {}, {}
    for w in workloads:
        ours, base = by[(w, OURS)], by[(w, "fp32_allreduce")]
        reduction[w] = round(1.0 - ours["payload_bytes"] / base["payload_bytes"], 4)
        gap[w] = round((ours["final_loss"] - base["final_loss"]) / base["final_loss"], 4)
        steps[w] = ours["steps"]
        worst: float | None = None
        for psgd in ("powersgd_r1", "powersgd_r2"):
            p = by[(w, psgd)]
            target = max(ours["final_loss"], p["final_loss"])  # a loss both of them reach
            b_ours, b_p = bytes_to_reach(ours["curve"], target), bytes_to_reach(p["curve"], target)
            if b_ours is None or not b_p:
                continue
            r = b_ours / b_p
            worst = r if worst is None else max(worst, r)
        ratio[w] = None if worst is None else round(worst, 4)
    return {
        "bytes_reduction_vs_allreduce": reduction,
        "final_loss_gap_rel": gap,
        "bytes_ratio_vs_powersgd_at_equal_loss": ratio,
        "steps": steps,
        "workload": workloads,
    }


def table_rows(results: list[dict[str, Any]]) -> list[list[Any]]:
    """One row per (workload, method): bytes per step, reduction, wire cross-check, loss, density, time."""
    base = {r["workload"]: r for r in results if r["method"] == "fp32_allreduce"}
    rows = []
    for r in results:
        b = base[r["workload"]]
        lo = r["loopback_bytes"]
        expected = 2 * r["ring_sent_bytes"]  # both ranks send this much under ring algorithms
        rows.append([
            r["workload"], r["method"],
            round(r["payload_bytes"] / r["steps"]),
            round(1.0 - r["payload_bytes"] / b["payload_bytes"], 4),
            "n/a" if lo is None or not expected else round(lo / expected, 3),
            round(r["final_loss"], 4),
            round((r["final_loss"] - b["final_loss"]) / b["final_loss"], 4),
            "" if r["density"] is None else round(r["density"], 4),
            round(r["wall_s"], 1),
        ])
    return rows


HEADERS = [
    "workload", "method", "payload B/step/rank", "bytes reduction", "lo bytes / expected",
    "final held-out loss", "loss gap vs fp32", "mean density k/n", "train wall s",
]


NOTES = (
    "Payload = bytes each rank hands to collectives per step (allreduce: the tensor; allgather: ALL gathered "
    "bytes, own chunk included, so the allgather rows are counted conservatively). 'lo bytes / expected' "
    "compares the kernel's loopback tx counter over the training loop with 2 x the ring-algorithm bytes each "
    "rank sends (allreduce 2(p-1)/p N, allgather (p-1) chunk); it is approximate: TCP/IP headers, gloo's "
    "own barriers and any other process using loopback at the same time land in it too. DDP's initial "
    "broadcast is outside the counted loop. The JSON line's 'ours' is the shared-index scheme; "
    "bytes_ratio_vs_powersgd_at_equal_loss is the larger of the ratios against PowerSGD rank 1 and rank 2, "
    "each at the worse of the two final held-out losses."
)


def report_results(
    results: list[dict[str, Any]], plan: BenchPlan, *, quick: bool, image: str, dest: Destination,
    command: str | None = None, where: str = "",
) -> dict[str, Any]:
    """Table, the recorded entry (`dest`) and the final JSON line, through blacksoil.benchlog.report."""
    from blacksoil.benchlog import report

    summary = summarize(results)
    cfg = plan.config
    notes = NOTES + (
        f"\n\nOur settings: scheme={cfg.scheme}, target_rel_variance={cfg.target_rel_variance}, "
        f"density in [{cfg.min_density}, {cfg.max_density}], warmup_steps={cfg.warmup_steps}, "
        f"value_dtype={cfg.value_dtype}, error_feedback={cfg.error_feedback}; top-k density {plan.topk_density}."
    ) + (f"\n\n{where}" if where else "")
    report(
        "Gradient compression (2 gloo ranks)" + (" — quick" if quick else ""),
        HEADERS, table_rows(results), summary, command=command, notes=notes, images=[image], dest=dest,
    )
    return summary


def plot(results: list[dict[str, Any]], path: Path) -> None:
    """Held-out loss against cumulative payload bytes and against steps, one panel pair per workload."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    workloads = sorted({r["workload"] for r in results})
    fig, axes = plt.subplots(len(workloads), 2, figsize=(12, 4.2 * len(workloads)), squeeze=False)
    for row, w in enumerate(workloads):
        for r in (r for r in results if r["workload"] == w):
            steps = [c[0] for c in r["curve"]]
            loss = [c[1] for c in r["curve"]]
            sent = [(c[2] / 2**20, c[1]) for c in r["curve"] if c[2] > 0]  # log axis: skip the 0-byte start
            style = "-" if r["method"].startswith("ours") else "--"
            axes[row][0].plot(steps, loss, style, label=r["method"])
            axes[row][1].plot([b for b, _ in sent], [v for _, v in sent], style, label=r["method"])
        axes[row][0].set(title=f"{w}: held-out loss", xlabel="step", ylabel="loss")
        axes[row][1].set(title=f"{w}: loss vs bytes sent", xlabel="cumulative payload MiB per rank", xscale="log")
        axes[row][0].legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
