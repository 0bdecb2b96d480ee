"""The `blacksoil` command line: one typer app, each pillar registers its commands.

Errors blacksoil raises on purpose print as one line naming the bad value and the fix.
"""

from __future__ import annotations

import importlib
import sys
from typing import Annotated

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
    "blacksoil.flywheel_bench",  # `bench flywheel`: a composition root like platform, it runs every pillar at once
)

for _mod in _PILLAR_CLIS:
    importlib.import_module(_mod).register(app, bench)

_err = Console(stderr=True)
ADAPTER_HELP = ("LoRA adapter to serve: a published version (v3), or base; default: the latest promoted version "
                "(see `blacksoil adapters list`).")


@app.command()
def serve(
    port: Annotated[int | None, typer.Option(help="TCP port (default: serving.port, 8000).")] = None,
    host: Annotated[str | None, typer.Option(help="Address to bind (default 127.0.0.1).")] = None,
    model: Annotated[str | None, typer.Option(help="Registered model name (default: registry default).")] = None,
    replicas: Annotated[int | None, typer.Option(help="Embedded engine replicas.")] = None,
    threads: Annotated[int | None, typer.Option(help="CPU threads per replica.")] = None,
    upstream: Annotated[list[str] | None, typer.Option(
        help="OpenAI-compatible upstream base URL, e.g. http://host:8000/v1 (repeatable); no embedded engine."
    )] = None,
    slots: Annotated[int | None, typer.Option(help="KV-cache slots per replica.")] = None,
    ctx: Annotated[int | None, typer.Option(help="Context tokens per replica, shared by its slots.")] = None,
    concurrency: Annotated[int | None, typer.Option(help="Requests admitted per replica (0 = slots).")] = None,
    policy: Annotated[str | None, typer.Option(help="Scheduling policy: agent, round_robin or fcfs.")] = None,
    adapter: Annotated[str | None, typer.Option(help=ADAPTER_HELP)] = None,
    engine: Annotated[str | None, typer.Option(help="Engine blacksoil starts: llamacpp (embedded, default) or vllm "
                                               "(vLLM's OpenAI server from .venv-vllm; `make vllm-env`).")] = None,
) -> None:
    """Serve the OpenAI-compatible gateway (chat, completions, tools, /metrics) until Ctrl-C."""
    from blacksoil.platform import serve_platform

    overrides = {"host": host, "port": port, "model": model, "replicas": replicas, "threads": threads,
                 "upstreams": tuple(upstream) if upstream else None, "slots": slots, "ctx": ctx,
                 "concurrency": concurrency, "policy": policy, "engine": engine}
    serve_platform({k: v for k, v in overrides.items() if v is not None}, adapter)


@app.command()
def up(
    port: int = typer.Option(8000, help="TCP port on 127.0.0.1 for the API and the console."),
    learner: bool | None = typer.Option(None, "--learner/--no-learner",
                                        help="Run learning rounds in the background (default: platform.learner)."),
    adapter: str | None = typer.Option(None, help=ADAPTER_HELP),
    backend: str | None = typer.Option(None, help="Where engine replicas run: local, or ray (actors on a Ray "
                                                  "cluster's nodes); default: scheduling.backend."),
    address: str | None = typer.Option(None, help="Ray cluster with --backend ray: auto or HOST:PORT of its head "
                                                  "(default: scheduling.ray_address)."),
) -> None:
    """Run the whole platform until Ctrl-C or SIGTERM: engine, gateway, experience store, console (and the learner)."""
    from blacksoil.platform import run_up

    run_up(port, learner, adapter, backend, address)


def main() -> None:
    """Entry point: run the app, turning blacksoil errors into one line and an exit code."""
    try:
        app(standalone_mode=True)
    except BlacksoilError as e:
        _err.print(f"[bold red]error:[/] {e.message}", highlight=False, soft_wrap=True)
        sys.exit(2 if isinstance(e, UserError) else 1)


if __name__ == "__main__":
    main()
