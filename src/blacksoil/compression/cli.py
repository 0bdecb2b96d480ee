"""Command-line commands of the compression pillar.

Registered on the root app by blacksoil.cli; heavy imports stay inside the commands.
"""

from __future__ import annotations

from pathlib import Path

import typer

from blacksoil.benchlog import WRITE_DOC_HELP


def register(app: typer.Typer, bench: typer.Typer) -> None:
    """Add this pillar's commands to the root app and the `bench` group."""

    @bench.command("compression")
    def bench_compression(
        quick: bool = typer.Option(False, "--quick", help="Short smoke run (a few minutes on 2 busy cores)."),
        lm_steps: int = typer.Option(0, help="Override the tiny-LM step count (0: the mode's default)."),
        digits_steps: int = typer.Option(0, help="Override the digits-MLP step count (0: the mode's default)."),
        plot_path: Path | None = typer.Option(
            None, help="Where to write the loss-curve plot (default: img/compression_loss[_quick].png beside the "
            "recorded result)."
        ),
        write_doc: bool = typer.Option(False, "--write-doc", help=WRITE_DOC_HELP),
    ) -> None:
        """Compare gradient-compression DDP hooks (fp32, fp16, PowerSGD r1/r2, top-k+EF, ours) on 2 gloo ranks."""
        from blacksoil.compression import bench as b
        from blacksoil.config import settings
        from blacksoil.errors import ConfigError

        if lm_steps < 0 or digits_steps < 0:
            raise ConfigError(f"--lm-steps={lm_steps} / --digits-steps={digits_steps} must be >= 0 (0 = default)")
        plan = b.BenchPlan.make(quick, settings().compression)
        if lm_steps:
            plan.steps["tiny_lm"] = lm_steps
        if digits_steps:
            plan.steps["digits_mlp"] = digits_steps
        from blacksoil.benchlog import destination

        dest = destination(settings().home, write_doc)
        if plot_path is None:
            plot_path, image = dest.image("compression_loss_quick.png" if quick else "compression_loss.png")
        else:
            image = str(plot_path.resolve())
        results = b.run_all(plan)
        b.plot(results, plot_path)
        b.report_results(results, plan, quick=quick, image=image, dest=dest)
