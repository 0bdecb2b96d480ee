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


def main() -> None:
    """Entry point: run the app, turning blacksoil errors into one line and an exit code."""
    try:
        app(standalone_mode=True)
    except BlacksoilError as e:
        _err.print(f"[bold red]error:[/] {e.message}", highlight=False, soft_wrap=True)
        sys.exit(2 if isinstance(e, UserError) else 1)


if __name__ == "__main__":
    main()
