"""AgentScore view: stored runs compared on a cost-vs-completion chart, one point per run, per suite.

Reads the runs AgentScore saved (blacksoil.agentscore.report.load_runs); nothing is recomputed here.
"""

from __future__ import annotations

from typing import Any

from blacksoil.console.context import ConsoleContext, card, chart, table

_COLORS = ["#7fc98f", "#e0b35a", "#6aa7e0", "#e06a5a", "#b58fe0", "#5ad0e0"]


def collect(ctx: ConsoleContext, tenant: str) -> dict[str, Any]:
    from blacksoil.agentscore.report import load_runs

    runs = load_runs(ctx.settings.home)
    suites = sorted({r.get("suite", "?") for r in runs})
    datasets = []
    for i, suite in enumerate(suites):
        pts = [{"x": r["summary"]["cost_per_task_usd"], "y": r["summary"]["completion_rate"],
                "run": r["run_id"]} for r in runs if r.get("suite") == suite]
        datasets.append({"label": suite, "data": pts, "backgroundColor": _COLORS[i % len(_COLORS)]})
    rows = [[r["run_id"], r.get("suite"), r.get("split"), r.get("agent"), r.get("model") or "–",
             r["summary"]["tasks"], r["summary"]["completion_rate"], r["summary"].get("pass_k"),
             r["summary"]["cost_per_task_usd"], r["summary"].get("latency_p50_s")] for r in reversed(runs)]
    best = max((r["summary"]["completion_rate"] for r in runs), default=None)
    return {
        "cards": [card("runs", "stored runs", len(runs)), card("suites", "suites", len(suites)),
                  card("best_completion", "best completion", best)],
        "charts": [chart("pareto", "cost per task (USD) vs completion, one point per run", "scatter", [], datasets,
                         x_label="cost per task (USD)", y_label="completion rate")],
        "tables": [table("runs", "runs (newest first)",
                         ["run", "suite", "split", "agent", "model", "tasks", "completion", "pass^k",
                          "cost/task USD", "latency p50 s"], rows, "no AgentScore run yet: `blacksoil score`")],
    }
