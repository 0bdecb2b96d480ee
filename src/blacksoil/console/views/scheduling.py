"""Scheduling view: the live local scheduler of `blacksoil up --learner` (demand, cores of serving and of the
learner per control step, its decisions with their reasons), then the latest finished simulator run (allocation
over time stacked serving / learning / idle per policy, preemptions with their reasons, the topology with
placements).

The live part reads the LocalBackend the platform registered as `ctx.extras["scheduler"]` (machine-wide numbers,
no tenant data); its raw step records also go out under "live" for API clients.
"""

from __future__ import annotations

from typing import Any

from blacksoil.console.context import ConsoleContext, card, chart, table

_MAX_POINTS = 288  # a 24 h run at 5-minute resolution
_LIVE_POINTS = 300  # control steps charted (10 minutes at the default 2-s step)
_LIVE_DECISIONS = 100
_LIVE_RECORDS = 200  # raw step records in the JSON


def _learner_state(w: Any) -> str:
    """What a learner workload is doing, in words (duck-typed: platform_workloads.LearnerWorkload). Reads only its
    files and process state, never its lock: the scheduler holds that through a whole checkpointed stop."""
    st = w.status() if hasattr(w, "status") else {}
    progress = f"step {st.get('step', 0)}/{st.get('steps', '?')}"
    if getattr(w, "running", False):
        return f"training, {progress}"
    if getattr(w, "job", None) is None or st.get("state") == "done":
        return "idle: no round is training"
    return f"waiting for cores at {progress}"


def _live(backend: Any) -> dict[str, Any]:
    """Cards, charts, tables and raw records of the live local scheduler."""
    kept = backend.recent()
    recs = kept[-_LIVE_POINTS:]
    total = len(backend.cores)
    labels = [f"{r.at:.1f}" for r in recs]
    serving = [len(r.serving_cores) for r in recs]
    learning = [sum(len(c) for c in r.learner_cores.values()) for r in recs]
    idle = [total - s - k for s, k in zip(serving, learning, strict=True)]
    charts = [
        chart("live_cores", "live: cores per control step (s since the scheduler started)", "area", labels, [
            {"label": k, "data": v, "borderColor": c, "backgroundColor": c + "99"}
            for k, v, c in (("serving", serving, "#d95f02"), ("learning", learning, "#1b9e77"),
                            ("idle", idle, "#888888"))
        ], stacked=True, y_label="cores"),
        chart("live_demand", "live: serving demand and serving cores", "line", labels, [
            {"label": "demand (cores at 100 % utilization)", "data": [round(r.demand, 3) for r in recs],
             "borderColor": "#e0b35a"},
            {"label": "serving cores", "data": serving, "borderColor": "#d95f02"},
        ], y_label="cores"),
    ]
    decisions = [[round(r.at, 1), d.action.value, d.target, d.reason] for r in kept for d in r.decisions]
    last = recs[-1] if recs else None
    learners = getattr(backend, "learners", {})
    cards = [
        card("live_demand", "live demand (cores)", round(last.demand, 2) if last else 0),
        card("live_serving_cores", "serving cores", len(last.serving_cores) if last else 0),
        card("live_learner_cores", "learner cores", sum(len(c) for c in last.learner_cores.values()) if last else 0),
        card("live_preemptions", "learner preemptions", sum(getattr(w, "preemptions", 0) for w in learners.values())),
        card("live_learner", "learner", "; ".join(_learner_state(w) for w in learners.values()) or "–"),
    ]
    tables = [table("live_decisions", f"live decisions (latest {_LIVE_DECISIONS}) with their reasons",
                    ["t (s)", "action", "target", "reason"], decisions[-_LIVE_DECISIONS:][::-1],
                    "no decision yet: the scheduler keeps what it has")]
    raw = [{"at": r.at, "demand": r.demand, "serving_cores": list(r.serving_cores),
            "learner_cores": {k: list(v) for k, v in r.learner_cores.items()},
            "decisions": [{"action": d.action.value, "target": d.target, "reason": d.reason} for d in r.decisions]}
           for r in kept[-_LIVE_RECORDS:]]
    return {"cards": cards, "charts": charts, "tables": tables, "live": raw}


def _thin(xs: list[Any], n: int) -> list[Any]:
    step = max(1, len(xs) // n)
    return xs[::step]


def collect(ctx: ConsoleContext, tenant: str) -> dict[str, Any]:
    sim = _simulator(ctx)
    backend = ctx.extras.get("scheduler")
    if backend is None:
        return sim
    live = _live(backend)
    return {"cards": live["cards"] + sim["cards"], "charts": live["charts"] + sim["charts"],
            "tables": live["tables"] + sim["tables"], "live": live["live"]}


def _simulator(ctx: ConsoleContext) -> dict[str, Any]:
    """The latest finished simulator run."""
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
