"""The `blacksoil` command line: one typer app, each pillar registers its commands.

Errors blacksoil raises on purpose print as one line naming the bad value and the fix.
"""

from __future__ import annotations

import importlib
import sys

import typer
from rich.console import Console

from blacksoil.errors import BlacksoilError, UserError

app = typer.Typer(
    name="blacksoil",
    help="Open agentic infrastructure: serve, run agents safely, learn, schedule.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
bench = typer.Typer(help="Benchmarks: each prints a table and one final JSON line.", no_args_is_help=True)
app.add_typer(bench, name="bench")

# Each module has `register(app, bench)`; imports inside commands stay lazy so that
# `blacksoil serve` never imports torch.
_PILLAR_CLIS = (
    "blacksoil.serving.cli",
    "blacksoil.agentscore.cli",
    "blacksoil.agents.cli",
    "blacksoil.security.cli",
    "blacksoil.experience.cli",
    "blacksoil.learning.cli",
    "blacksoil.compression.cli",
    "blacksoil.scheduling.cli",
    "blacksoil.console.cli",
)

for _mod in _PILLAR_CLIS:
    importlib.import_module(_mod).register(app, bench)

_err = Console(stderr=True)


@app.command()
def up(
    port: int = typer.Option(8000, help="TCP port on 127.0.0.1 for the API and the console."),
    learner: bool | None = typer.Option(None, "--learner/--no-learner",
                                        help="Run learning rounds in the background (default: platform.learner)."),
) -> None:
    """Run the whole platform until Ctrl-C: engine, gateway, experience store, console (and the learner)."""
    import threading

    from blacksoil.config import settings
    from blacksoil.platform import running_platform, start_background_learner

    s = settings()
    stop = threading.Event()
    learn = s.platform.learner if learner is None else learner
    sink = None
    if learn:  # the learner sees each model call as it happens; the store still gets every event
        from blacksoil.learning.collect import CaptureSink
        from blacksoil.platform import make_sink

        sink = CaptureSink(forward=make_sink(s))
    with running_platform(s, port=port, sink=sink) as gw:
        _err.print(f"blacksoil is up: API {gw.openai_base_url}  console {gw.url}/console  metrics {gw.url}/metrics")
        worker = start_background_learner(gw, s, stop) if learn else None
        try:
            while not stop.wait(1.0):
                pass
        except KeyboardInterrupt:
            _err.print("stopping…")
        finally:
            stop.set()
            if worker is not None:
                worker.join(timeout=60)
            if sink is not None:
                sink.close()


def main() -> None:
    """Entry point: run the app, turning blacksoil errors into one line and an exit code."""
    try:
        app(standalone_mode=True)
    except BlacksoilError as e:
        _err.print(f"[bold red]error:[/] {e.message}", highlight=False, soft_wrap=True)
        sys.exit(2 if isinstance(e, UserError) else 1)


if __name__ == "__main__":
    main()
