"""Command-line commands of the security pillar.

Registered on the root app by blacksoil.cli; heavy imports stay inside the commands.
"""

from __future__ import annotations

import typer


def register(app: typer.Typer, bench: typer.Typer) -> None:
    """Add this pillar's commands to the root app and the `bench` group."""
