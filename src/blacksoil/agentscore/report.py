"""Run storage (JSON under <home>/agentscore/runs) and the HTML report with matplotlib plots.

Plots: completion per category for this run; cost vs completion over all stored runs of the suite (Pareto).
"""

from __future__ import annotations

import datetime as dt
import html
import json
import uuid
from pathlib import Path
from typing import Any

__all__ = ["load_runs", "pareto_front", "plot_categories", "plot_pareto", "runs_dir", "save_run", "write_html"]


def runs_dir(home: Path) -> Path:
    """Folder of stored runs under the home folder."""
    return home / "agentscore" / "runs"


def save_run(home: Path, run: dict[str, Any]) -> Path:
    """Store a run (metadata, summary, episodes) as JSON; returns its path."""
    run.setdefault("run_id", dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S") + "-" + uuid.uuid4().hex[:6])
    run.setdefault("created", dt.datetime.now(dt.UTC).isoformat(timespec="seconds"))
    path = runs_dir(home) / f"{run['run_id']}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(run, indent=1, default=str))
    return path


def load_runs(home: Path, suite: str | None = None) -> list[dict[str, Any]]:
    """All stored runs (optionally of one suite), oldest first; unreadable files are skipped."""
    out = []
    for p in sorted(runs_dir(home).glob("*.json")):
        try:
            run = json.loads(p.read_text())
        except (OSError, json.JSONDecodeError):
            continue
        if suite is None or run.get("suite") == suite:
            out.append(run)
    return out


def _label(run: dict[str, Any]) -> str:
    return f"{run['agent']}:{run.get('model') or '-'} {run['split']}"


def plot_categories(run: dict[str, Any], path: Path) -> Path:
    """Bar chart of completion per task category."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cats = run["summary"]["completion_by_category"]
    fig, ax = plt.subplots(figsize=(7, 3.5))
    ax.bar(list(cats), list(cats.values()), color="#4c72b0")
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("completion rate")
    ax.set_title(f"{run['suite']} ({_label(run)}): completion per category", fontsize=10)
    ax.tick_params(axis="x", rotation=30)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def plot_pareto(runs: list[dict[str, Any]], current: str, path: Path) -> Path:
    """Cost per task vs completion, one point per stored run; the current run is highlighted."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for r in runs:
        s = r["summary"]
        mine = r["run_id"] == current
        ax.scatter(s["cost_per_task_usd"], s["completion_rate"], s=70 if mine else 30,
                   color="#c44e52" if mine else "#4c72b0", zorder=3 if mine else 2)
        ax.annotate(_label(r), (s["cost_per_task_usd"], s["completion_rate"]), fontsize=7,
                    xytext=(3, 3), textcoords="offset points")
    front = pareto_front([(r["summary"]["cost_per_task_usd"], r["summary"]["completion_rate"]) for r in runs])
    if len(front) > 1:
        ax.step([c for c, _ in front], [q for _, q in front], where="post", color="#55a868", lw=1, label="Pareto front")
        ax.legend(fontsize=7, loc="center right")
    ax.set_xlabel("cost per task (USD)")
    ax.set_ylabel("completion rate")
    ax.set_ylim(-0.05, 1.05)
    ax.margins(x=0.25)
    ax.set_title(f"{runs[0]['suite'] if runs else ''}: cost vs completion, one point per run", fontsize=10)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def pareto_front(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """(cost, completion) points no other point beats on both axes, cheapest first."""
    front: list[tuple[float, float]] = []
    for cost, done in sorted(points, key=lambda p: (p[0], -p[1])):
        if not front or done > front[-1][1]:
            front.append((cost, done))
    return front


def write_html(home: Path, run: dict[str, Any]) -> Path:
    """The run's HTML report (summary table, per-task table, both plots) under <home>/agentscore/reports."""
    out = home / "agentscore" / "reports" / run["run_id"]
    cat_png = plot_categories(run, out / "categories.png")
    pareto_png = plot_pareto(load_runs(home, run["suite"]), run["run_id"], out / "pareto.png")
    s = run["summary"]
    rows = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(str(v))}</td></tr>" for k, v in s.items())
    eps = "".join(
        f"<tr><td>{html.escape(e['task_id'])}</td><td>{e['trial']}</td><td>{'✔' if e['passed'] else '✘'}</td>"
        f"<td>{e['reward']:.2f}</td><td>{e['latency_s']:.2f}</td><td>{e['tool_calls']}</td>"
        f"<td>{e['tool_errors']}</td><td>{html.escape('; '.join(c['detail'] for c in e['checks'] if not c['passed']))}"
        f"</td></tr>"
        for e in run["episodes"]
    )
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>AgentScore {html.escape(run['suite'])}</title>
<style>body{{font-family:sans-serif;margin:2em}}td,th{{border:1px solid #ccc;padding:3px 8px;text-align:left}}
table{{border-collapse:collapse;margin-bottom:1em}}</style></head><body>
<h1>AgentScore — {html.escape(run['suite'])} / {html.escape(run['split'])}</h1>
<p>agent <b>{html.escape(run['agent'])}</b>, model <b>{html.escape(str(run.get('model')))}</b>,
endpoint {html.escape(str(run.get('endpoint')))}, k={run['k']}, run {html.escape(run['run_id'])}.
Policy violations are a placeholder (0) until the security pillar reports them.</p>
<table>{rows}</table>
<img src="{cat_png.name}"> <img src="{pareto_png.name}">
<h2>Episodes</h2><table><tr><th>task</th><th>trial</th><th>pass</th><th>reward</th><th>latency s</th>
<th>tool calls</th><th>tool errors</th><th>failed checks</th></tr>{eps}</table></body></html>"""
    path = out / "report.html"
    path.write_text(page)
    return path
