"""Scheduling view over the latest finished simulator run: allocation over time stacked serving / learning /
idle per policy, preemptions with their reasons, and the cluster's topology with placements.
"""

from __future__ import annotations

from typing import Any

from blacksoil.console.context import ConsoleContext, card, chart, table

_MAX_POINTS = 288  # a 24 h run at 5-minute resolution


def _thin(xs: list[Any], n: int) -> list[Any]:
    step = max(1, len(xs) // n)
    return xs[::step]


def collect(ctx: ConsoleContext, tenant: str) -> dict[str, Any]:
    from blacksoil.scheduling.runs import load_latest_sim_run

    run = load_latest_sim_run(ctx.settings.home)
    if run is None:
        return {"cards": [card("sim_runs", "simulator runs", 0)], "charts": [],
                "tables": [table("policies", "policies", ["policy"], [],
                                 "no simulator run yet: `blacksoil sim --accelerators 1000 --hours 6`")]}
    charts = []
    for name, p in run["policies"].items():
        s = p["series"]
        labels = [f"{t:.1f}" for t in _thin(s["t_h"], _MAX_POINTS)]
        charts.append(chart(f"alloc_{name}", f"{name}: accelerators over time (h)", "area", labels, [
            {"label": k, "data": _thin(s[k], _MAX_POINTS), "borderColor": c, "backgroundColor": c + "99"}
            for k, c in (("serving", "#d95f02"), ("learning", "#1b9e77"), ("idle", "#888888"))
        ], stacked=True, y_label="accelerators"))
    summary_rows = [[name, p["summary"]["slo_attainment"], p["summary"]["goodput_acc_hours"],
                     p["summary"]["lost_work_frac"], p["summary"]["utilization"], p["summary"]["preemptions"],
                     p["summary"]["decision_p99_ms"]] for name, p in run["policies"].items()]
    pre_rows = [[round(e["t_h"], 2), e["policy"], e["victim"], e["action"], e["reason"]]
                for e in run.get("preemptions", [])[-200:]]
    topo = run.get("placements", {})
    topo_rows = [[n["node"], n["domain"], n["accelerators"],
                  ", ".join(f"{w}×{k}" for w, k in sorted(n["used"].items())) or "idle",
                  "yes" if n.get("agent_group") else ""] for n in topo.get("nodes", [])]
    return {
        "cards": [card("sim_runs", "simulator runs", run.get("count", 1)),
                  card("accelerators", "accelerators", run["accelerators"]),
                  card("hours", "simulated hours", run["hours"]),
                  card("policies", "policies compared", len(run["policies"]))],
        "charts": charts,
        "tables": [
            table("policies", f"policies (run {run['run_id']})",
                  ["policy", "SLO attainment", "goodput acc-h", "lost work", "utilization", "preemptions",
                   "decision p99 ms"], summary_rows),
            table("preemptions", "preemptions and shrinks (latest 200) with their reasons",
                  ["hour", "policy", "victim", "action", "reason"], pre_rows, "no preemption in this run"),
            table("topology", f"topology and placements at the end ({topo.get('policy', '–')}; agent groups marked)",
                  ["node", "domain", "accelerators", "placed", "agent group"], topo_rows),
        ],
    }
