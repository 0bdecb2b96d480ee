"""Plots of a simulator run: allocation over time per policy, and SLO attainment against goodput.

Written as PNGs under docs/img/ so docs/benchmarks.md can link them.
"""

from __future__ import annotations

from pathlib import Path

from blacksoil.scheduling.simulator import SimResult


def plot_allocation(results: list[SimResult], accelerators: int, path: Path) -> Path:
    """Stacked serving / learning / idle accelerators over time, one panel per policy."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(results)
    cols = 3 if n > 4 else 2 if n > 1 else 1
    rows = (n + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(6 * cols, 3.2 * rows), sharex=True, sharey=True, squeeze=False)
    for ax, r in zip(axes.flat, results, strict=False):
        s = r.series
        ax.stackplot(s["t_h"], s["serving"], s["learning"], s["idle"], labels=["serving", "learning", "idle"],
                     colors=["#d95f02", "#1b9e77", "#cccccc"], linewidth=0)
        ax.set_title(f"{r.policy}: SLO {r.slo_attainment:.4f}, goodput {r.goodput_acc_hours:,.0f} acc-h", fontsize=9)
        ax.set_ylim(0, accelerators)
        ax.set_xlabel("hour")
        ax.set_ylabel("accelerators")
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    axes.flat[0].legend(loc="lower left", fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_slo_vs_goodput(results: list[SimResult], path: Path) -> Path:
    """One point per policy: serving SLO attainment against learning goodput."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 4))
    for r in results:
        ax.scatter(r.goodput_acc_hours, r.slo_attainment, s=60)
        ax.annotate(r.policy, (r.goodput_acc_hours, r.slo_attainment), textcoords="offset points", xytext=(6, 4))
    ax.axhline(0.999, color="grey", linestyle="--", linewidth=1)
    ax.set_xlabel("learning goodput (useful accelerator-hours)")
    ax.set_ylabel("serving SLO attainment")
    ax.set_title("SLO attainment vs learning goodput")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
