"""Command-line commands of the agentscore pillar: `blacksoil score` and `blacksoil bench factory`.

Registered on the root app by blacksoil.cli; heavy imports stay inside the commands.
"""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Iterator
from typing import Any

import typer

from blacksoil.benchlog import WRITE_DOC_HELP
from blacksoil.errors import ConfigError


@contextlib.contextmanager
def _endpoint(agent: str, endpoint: str | None, model: str | None) -> Iterator[tuple[str | None, str | None]]:
    """The endpoint to score: the one given, or a local gateway with the default model started for the run."""
    if agent not in ("llm", "runtime") or endpoint:
        if agent in ("llm", "runtime") and not model:
            raise ConfigError("--endpoint needs --model NAME (the model the endpoint serves)")
        yield endpoint, model
        return
    from blacksoil.config import settings
    from blacksoil.serving.launch import gateway

    with gateway(settings(), model=model) as gw:
        yield gw.openai_base_url, gw.model


def score(
    agent: str = typer.Option("runtime", help="runtime (agent runtime: policies, approvals), llm (built-in loop), "
                                          "oracle (scripted) or null (does nothing)."),
    suite: str = typer.Option("manufacturing", help="manufacturing, tools-basic, jobshop-quality or "
                                                      "tools-general (held out: dev and test only)."),
    split: str = typer.Option("test", help="train, dev, test (test is never used for training) or all."),
    k: int = typer.Option(1, help="Trials per task; pass^k counts a task only if all k pass."),
    endpoint: str = typer.Option(None, help="OpenAI-compatible base URL (…/v1); default: start the local gateway."),
    model: str = typer.Option(None, help="Model name at the endpoint; default: the gateway's default model."),
    limit: int = typer.Option(0, help="Only the first N tasks of the split (0 = all)."),
    step_budget: int = typer.Option(0, help="Model calls per task for the llm/runtime agent (0 = settings)."),
    approvals: str = typer.Option(None, help="runtime agent: calls needing a human stay pending (none) or are "
                                             "approved by a stand-in (auto); default agentscore.runtime_approvals."),
    write_doc: bool = typer.Option(False, "--write-doc", help=WRITE_DOC_HELP),
) -> None:
    """Score an agent on an AgentScore suite: table, HTML report, a recorded entry with plots, one JSON line."""
    from rich.progress import Progress

    from blacksoil import benchlog
    from blacksoil.agents.launcher import RuntimeSetup
    from blacksoil.config import settings
    from blacksoil.experience.sink import make_sink

    from . import api, metrics, report

    s = settings()
    if k < 1:
        raise ConfigError(f"--k {k} must be at least 1")
    tasks = api.list_tasks(suite, None if split == "all" else split)
    if limit > 0:
        tasks = tasks[:limit]
    if not tasks:
        raise ConfigError(f"suite {suite} has no tasks in split {split}")
    with _endpoint(agent, endpoint, model) as (base_url, model_name):
        runner = api.make_agent(agent, base_url=base_url, model=model_name, step_budget=step_budget or None,
                                approvals=approvals, config=s.agentscore, api_key=s.agents.api_key,
                                runtime=RuntimeSetup.from_settings(s), new_sink=lambda: make_sink(s))
        rewards = api.RewardRecorder.from_config(s.home, s.experience, s.agentscore)
        with Progress() as bar:
            job = bar.add_task(f"{suite}/{split} {agent}", total=len(tasks) * k)
            episodes = api.run_tasks(runner, tasks, k, on_episode=lambda _: bar.advance(job), rewards=rewards,
                                     settings=api.EnvSettings.from_settings(s))
    summary = metrics.summarize(episodes, model_name or agent, s.agentscore)
    run: dict[str, Any] = {"agent": agent, "model": model_name, "endpoint": base_url, "suite": suite, "split": split,
                           "k": k, "summary": summary, "episodes": [e.to_dict() for e in episodes]}
    run_path = report.save_run(s.home, run)
    html = report.write_html(s.home, run)
    images: list[str] = []
    dest = benchlog.destination(s.home, write_doc)
    dest.img.mkdir(parents=True, exist_ok=True)
    for name in ("categories", "pareto"):
        # The runtime agent's plots get their own names so the llm baseline entry's plots stay what they were.
        tag = f"{suite}_{agent}" if agent == "runtime" else suite
        target, link = dest.image(f"agentscore_{tag}_{name}.png")
        shutil.copyfile(html.parent / f"{name}.png", target)
        images.append(link)
    rows = [[key, v] for key, v in summary.items() if key != "completion_by_category"]
    rows += [[f"completion: {c}", v] for c, v in summary["completion_by_category"].items()]
    keys = ("tasks", "completion_rate", "pass_k", "latency_p50_s", "latency_p95_s", "tokens_per_task",
            "cost_per_task_usd", "cpu_seconds_per_task", "partial_credit", "tool_errors", "policy_violations")
    result = {"suite": suite, "split": split, "agent": agent, "model": model_name, "k": k,
              **{key: summary[key] for key in keys}, "report": str(html), "run": str(run_path)}
    notes = ("policy_violations: tool calls the Cedar policies denied or sent to a human (runtime agent only; the "
             "llm, oracle and null agents bypass the policies and report 0). "
             "Timings on a shared 2-core machine are inflated by other load.")
    benchlog.report(f"AgentScore {suite}/{split} — {agent} {model_name or ''}".strip(), ["metric", "value"], rows,
                    result, notes=notes, images=images, dest=dest)


def bench_factory(
    quick: bool = typer.Option(False, help="Three small instances, 1 s limits (for tests)."),
    time_limit: float = typer.Option(10.0, help="CP-SAT time limit per instance (seconds)."),
    write_doc: bool = typer.Option(False, "--write-doc", help=WRITE_DOC_HELP),
) -> None:
    """Factory benchmark: RUL RMSE on C-MAPSS FD001 test and CP-SAT makespan ÷ best known on classic instances."""
    from blacksoil import benchlog
    from blacksoil.config import settings
    from blacksoil.factories.manufacturing import bench

    if time_limit <= 0:
        raise ConfigError(f"--time-limit {time_limit} must be > 0 seconds")
    s = settings()
    names = ("ft06", "la01", "la02") if quick else bench.DEFAULT_INSTANCES
    out = bench.run(s.home, s.manufacturing, names, 1.0 if quick else time_limit)
    notes = ("CP-SAT with 2 workers on a 2-core machine shared with other jobs (timings inflated). "
             "RUL: HistGradientBoosting on rolling features, target capped at 125, evaluated at each test "
             "engine's last cycle against RUL_FD001.")
    benchlog.report("Factory: RUL (C-MAPSS FD001) and job shop (CP-SAT)", ["item", "value", "reference / detail"],
                    out["rows"], out["result"], notes=notes,
                    dest=benchlog.destination(s.home, write_doc))


def register(app: typer.Typer, bench: typer.Typer) -> None:
    """Add this pillar's commands to the root app and the `bench` group."""
    app.command("score")(score)
    bench.command("factory")(bench_factory)
