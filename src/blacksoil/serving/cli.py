"""Command-line commands of the serving pillar: serve, models, demo, bench serving.

Registered on the root app by blacksoil.cli; heavy imports stay inside the commands.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from blacksoil.benchlog import WRITE_DOC_HELP


def register(app: typer.Typer, bench: typer.Typer) -> None:
    """Add this pillar's commands to the root app and the `bench` group."""
    models = typer.Typer(help="The local model registry (GGUF files under BLACKSOIL_HOME).", no_args_is_help=True)
    app.add_typer(models, name="models")

    @models.command("list")
    def models_list() -> None:
        """List registered models; the default is marked with *."""
        from rich.console import Console
        from rich.table import Table

        from blacksoil.config import settings
        from blacksoil.serving.models import ModelRegistry

        reg = ModelRegistry(settings().home)
        default = reg.default_name()
        table = Table("", "name", "path", "size MiB", "builtin")
        for m in reg.list():
            size = m.path.stat().st_size / 2**20 if m.path.exists() else float("nan")
            table.add_row("*" if m.name == default else "", m.name, str(m.path), f"{size:.1f}", str(m.builtin))
        Console().print(table)

    @models.command("add")
    def models_add(
        path: Annotated[Path, typer.Argument(help="Path of a local .gguf file.")],
        name: Annotated[str | None, typer.Option(help="Name to register it under (default: file stem).")] = None,
    ) -> None:
        """Register a local GGUF model file."""
        from blacksoil.config import settings
        from blacksoil.serving.models import ModelRegistry

        entry = ModelRegistry(settings().home).add(path, name)
        typer.echo(f"added {entry.name} -> {entry.path}")

    @models.command("default")
    def models_default(
        name: Annotated[str | None, typer.Argument(help="Model to make the default; omit to print it.")] = None,
    ) -> None:
        """Print the default model, or set it."""
        from blacksoil.config import settings
        from blacksoil.serving.models import ModelRegistry

        reg = ModelRegistry(settings().home)
        if name:
            reg.set_default(name)
        entry = reg.resolve(None)
        typer.echo(f"{entry.name} {entry.path}")

    @app.command()
    def demo() -> None:
        """Start the gateway, run a short agent exchange (chat + tool call) through the openai SDK, print metrics."""
        from blacksoil.config import settings
        from blacksoil.serving.demo import run_demo

        run_demo(settings())

    @bench.command("serving")
    def bench_serving(
        quick: Annotated[bool, typer.Option(help="Smaller run (under 3 minutes).")] = False,
        sessions: Annotated[int, typer.Option(help="Concurrent simulated agent sessions.")] = 8,
        seed: Annotated[int, typer.Option(help="Seed of the workload sample.")] = 0,
        write_doc: Annotated[bool, typer.Option("--write-doc", help=WRITE_DOC_HELP)] = False,
        engine: Annotated[str, typer.Option(help="llamacpp: the comparisons below; vllm: vLLM beside llama.cpp "
                                            "(ITL, TTFT, tokens/s, token capture, runtime-LoRA swaps).")] = "llamacpp",
    ) -> None:
        """Gateway overhead vs direct engine, prefix-reuse TTFT, agent sessions agent-aware vs FCFS."""
        from blacksoil.benchlog import destination
        from blacksoil.config import settings
        from blacksoil.errors import ConfigError

        s = settings()
        if engine == "vllm":
            from blacksoil.serving.bench_vllm import run_vllm_bench

            run_vllm_bench(s, quick=quick, dest=destination(s.home, write_doc))
            return
        if engine != "llamacpp":
            raise ConfigError(f"--engine {engine!r} is unknown; use llamacpp or vllm")
        from blacksoil.serving.bench import run_bench

        run_bench(s, quick=quick, sessions=sessions, seed=seed, dest=destination(s.home, write_doc))
