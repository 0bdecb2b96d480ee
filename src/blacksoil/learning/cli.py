"""Command-line commands of the learning pillar: `learn`, `adapters list`, `bench swap`.

Registered on the root app by blacksoil.cli; heavy imports stay inside the commands.
"""

from __future__ import annotations

import typer

from blacksoil.benchlog import WRITE_DOC_HELP

adapters_app = typer.Typer(help="Published LoRA adapter versions (immutable).", no_args_is_help=True)


def register(app: typer.Typer, bench: typer.Typer) -> None:
    """Add this pillar's commands to the root app and the `bench` group."""
    app.add_typer(adapters_app, name="adapters")
    app.command("learn")(learn)
    bench.command("swap")(bench_swap)


@adapters_app.command("list")
def adapters_list(
    model: str = typer.Option(None, help="Base model name (default: the registry's default model)."),
) -> None:
    """List adapter versions of a base model: status, parent, dev metrics, files."""
    from rich.console import Console
    from rich.table import Table

    from blacksoil.config import settings
    from blacksoil.learning.adapters import AdapterStore
    from blacksoil.serving.models import ModelRegistry

    s = settings()
    name = model or ModelRegistry(s.home).default_name()
    versions = AdapterStore(s.home, name).list()
    table = Table(title=f"adapters of {name}")
    for h in ("version", "status", "parent", "created", "metrics", "gguf"):
        table.add_column(h)
    import datetime as dt

    for v in versions:
        table.add_row(v.version, v.status, v.parent or "base",
                      dt.datetime.fromtimestamp(v.created_at, dt.UTC).strftime("%Y-%m-%d %H:%M"),
                      ", ".join(f"{k}={x:.2f}" for k, x in sorted(v.metrics.items())), str(v.gguf_path))
    Console().print(table if versions else f"no adapters published for {name} yet; run `blacksoil learn`")


def learn(
    rounds: int = typer.Option(1, min=1, help="Learning rounds: collect → replay → train → gate → publish → swap."),
    suites: str = typer.Option("tools-basic,manufacturing", help="Comma-separated AgentScore suites to learn on."),
    attempts: int = typer.Option(2, min=1, help="Attempts per train task per round (sampled at --temperature)."),
    tasks_per_suite: int = typer.Option(4, min=1, help="Train tasks per suite attempted each round."),
    gate_tasks: int = typer.Option(4, min=1, help="Dev tasks per learned suite the eval gate scores (held-out suites: "
                                                  "all their dev tasks)."),
    steps: int = typer.Option(None, help="Optimizer steps per round (default: learning.steps_per_round)."),
    temperature: float = typer.Option(0.7, min=0.0, help="Sampling temperature of collection attempts."),
    demos: bool = typer.Option(True, help="Seed replay with oracle demonstrations of train tasks."),
    practice: int = typer.Option(0, min=0, help="Also demonstrate this many fresh train instances per task "
                                                "template (generated; never equal to a dev/test task)."),
    held_out: str = typer.Option("tools-general", help="Comma-separated suites never learned from; the gate and "
                                                       "the demo score them so general tool calling cannot "
                                                       "silently regress ('' = none)."),
    concurrency: int = typer.Option(4, min=1, help="Agent episodes at once when collecting attempts."),
    score_concurrency: int = typer.Option(1, min=1, help="Agent episodes at once when scoring (gate, demo test "
                                                         "splits); 1 = reproducible scores, each on a fresh engine."),
    demo: bool = typer.Option(False, "--demo", help="Closed-loop demo: test-split baseline, rounds, test again."),
    test_tasks: int = typer.Option(None, help="With --demo: test tasks per suite (default: all)."),
    write_doc: bool = typer.Option(False, "--write-doc", help="With --demo: " + WRITE_DOC_HELP),
) -> None:
    """Improve the served model from its own experience, without downtime (see `blacksoil adapters list`)."""
    from blacksoil.agentscore import api
    from blacksoil.benchlog import destination
    from blacksoil.config import settings
    from blacksoil.errors import ConfigError
    from blacksoil.learning.context import LearnerContext
    from blacksoil.learning.loop import LoopOptions, run_demo, run_learning

    learned = tuple(x.strip() for x in suites.split(",") if x.strip())
    kept_out = tuple(x.strip() for x in held_out.split(",") if x.strip())
    for name in (*learned, *kept_out):
        if name not in api.suites():
            raise ConfigError(f"suite {name!r} does not exist; use one of {', '.join(api.suites())}")
    if set(learned) & set(kept_out):
        raise ConfigError(f"{sorted(set(learned) & set(kept_out))} cannot be both learned and held out")
    # `learn` owns its gateway and runs serving and training one after the other: each phase gets every core.
    opts = LoopOptions(suites=learned, attempts=attempts, tasks_per_suite=tasks_per_suite, gate_tasks=gate_tasks,
                       steps=steps, temperature=temperature, demos=demos, practice=practice, held_out=kept_out,
                       exclusive_cores=True, concurrency=concurrency,
                       score_concurrency=score_concurrency)
    s = settings()
    ctx = LearnerContext.from_settings(s)
    if demo:
        run_demo(rounds, opts, ctx, test_tasks=test_tasks, dest=destination(s.home, write_doc))
    else:
        run_learning(rounds, opts, ctx)


def bench_swap(
    sessions: int = typer.Option(4, min=1, help="Concurrent streaming agent sessions."),
    swaps: int = typer.Option(3, min=1, help="Adapter swaps during the load."),
    canary: bool = typer.Option(False, help="Run a canary phase before each cut-over."),
    write_doc: bool = typer.Option(False, "--write-doc", help=WRITE_DOC_HELP),
) -> None:
    """Hot-swap adapters under continuous load; `failed` must be 0."""
    from blacksoil import benchlog
    from blacksoil.config import settings
    from blacksoil.learning.bench import run_swap_bench
    from blacksoil.learning.context import LearnerContext

    s = settings()
    res = run_swap_bench(LearnerContext.from_settings(s), sessions=sessions, swaps=swaps, canary=canary)
    keys = ("requests", "failed", "swaps", "swap_visible_s_max", "itl_p99_ms_during_swap", "itl_p99_ms_steady")
    benchlog.report("Hot swap under load", ["metric", "value"], [[k, res[k]] for k in keys], res,
                    notes=f"{sessions} streaming sessions, {swaps} blue/green swaps of random small LoRA adapters "
                          f"(canary={canary}); served version after the run: {res['served_version']}.",
                    dest=benchlog.destination(s.home, write_doc))
