"""Command-line commands of the compression pillar.

Registered on the root app by blacksoil.cli; heavy imports stay inside the commands.
"""

from __future__ import annotations

from pathlib import Path

import typer

NOTES = (
    "Payload = bytes each rank hands to collectives per step (allreduce: the tensor; allgather: ALL gathered "
    "bytes, own chunk included, so the allgather rows are counted conservatively). 'lo bytes / expected' "
    "compares the kernel's loopback tx counter over the training loop with 2 x the ring-algorithm bytes each "
    "rank sends (allreduce 2(p-1)/p N, allgather (p-1) chunk); it is approximate: TCP/IP headers, gloo's "
    "own barriers and any other process using loopback at the same time land in it too. DDP's initial "
    "broadcast is outside the counted loop. The JSON line's 'ours' is the shared-index scheme."
)


def register(app: typer.Typer, bench: typer.Typer) -> None:
    """Add this pillar's commands to the root app and the `bench` group."""

    @bench.command("compression")
    def bench_compression(
        quick: bool = typer.Option(False, "--quick", help="Short smoke run (a few minutes on 2 busy cores)."),
        lm_steps: int = typer.Option(0, help="Override the tiny-LM step count (0: the mode's default)."),
        digits_steps: int = typer.Option(0, help="Override the digits-MLP step count (0: the mode's default)."),
        plot_path: Path | None = typer.Option(
            None, help="Where to write the loss-curve plot (default docs/img/compression_loss[_quick].png)."
        ),
        write_doc: bool = typer.Option(True, help="Append the result to docs/benchmarks.md."),
    ) -> None:
        """Compare gradient-compression DDP hooks (fp32, fp16, PowerSGD r1/r2, top-k+EF, ours) on 2 gloo ranks."""
        from blacksoil.benchlog import report
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
        if plot_path is None:
            plot_path = Path("docs/img") / ("compression_loss_quick.png" if quick else "compression_loss.png")
        results = b.run_all(plan)
        b.plot(results, plot_path)
        # benchmarks.md lives in docs/: link the image relative to it when it is there.
        image = str(plot_path.relative_to("docs")) if plot_path.parts[:1] == ("docs",) else str(plot_path)
        summary = b.summarize(results)
        cfg = plan.config
        notes = NOTES + (
            f"\n\nOur settings: scheme={cfg.scheme}, target_rel_variance={cfg.target_rel_variance}, "
            f"density in [{cfg.min_density}, {cfg.max_density}], warmup_steps={cfg.warmup_steps}, "
            f"value_dtype={cfg.value_dtype}, error_feedback={cfg.error_feedback}; top-k density {plan.topk_density}."
        )
        report(
            "Gradient compression (2 gloo ranks)" + (" — quick" if quick else ""),
            b.HEADERS, b.table_rows(results), summary, notes=notes,
            images=[image], write_doc=write_doc,
        )
