"""Command-line commands of the experience pillar.

Registered on the root app by blacksoil.cli; heavy imports stay inside the commands.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer

from blacksoil.benchlog import WRITE_DOC_HELP

if TYPE_CHECKING:
    from blacksoil.experience.store import ExperienceStore


def _store() -> ExperienceStore:
    from blacksoil.config import settings
    from blacksoil.experience.store import ExperienceStore

    s = settings()
    return ExperienceStore.from_settings(s.home, s.experience)


def register(app: typer.Typer, bench: typer.Typer) -> None:
    """Add this pillar's commands to the root app and the `bench` group."""
    exp = typer.Typer(help="Experience store: stats, export, import, purge, PII evaluation.", no_args_is_help=True)
    app.add_typer(exp, name="experience")

    @exp.command("stats")
    def stats(tenant: str | None = typer.Option(None, help="Only this tenant (default: every tenant).")) -> None:
        """Rows per table and tenant in the experience store."""
        from rich.console import Console
        from rich.table import Table

        store = _store()
        tenants = [tenant] if tenant else store.tenants()
        table = Table(title=f"experience store ({store.engine.url.render_as_string(hide_password=True)})")
        cols = ["sessions", "model_calls", "tool_steps", "rewards", "tasks"]
        for c in ["tenant", *cols]:
            table.add_column(c)
        for t in tenants:
            st = store.tenant(t).stats()
            table.add_row(t, *(str(st[c]) for c in cols))
        Console().print(table)
        store.close()

    @exp.command("export")
    def export(
        tenant: str = typer.Option(..., help="Tenant whose data to export."),
        fmt: str = typer.Option("jsonl", "--format", help="jsonl or parquet."),
        out: Path = typer.Option(..., help="Output file."),
    ) -> None:
        """Export one tenant's model calls and tool steps (with rewards) as JSONL or Parquet."""
        store = _store()
        n = store.tenant(tenant).export(out, fmt)
        typer.echo(f"wrote {n} rows to {out}")
        store.close()

    @exp.command("import")
    def import_(jsonl: Path = typer.Argument(..., help="JSONL file written by the gateway's JsonlSink.")) -> None:
        """Anonymize and import a JSONL experience file into the store (idempotent by event_id)."""
        store = _store()
        read, new = store.import_jsonl(jsonl)
        typer.echo(f"read {read} events, {new} new")
        store.close()

    @exp.command("purge")
    def purge(
        tenant: str = typer.Option(..., help="Tenant whose data to delete."),
        yes: bool = typer.Option(False, "--yes", help="Do not ask for confirmation."),
    ) -> None:
        """Delete every row of one tenant (right to erasure)."""
        if not yes:
            typer.confirm(f"Delete all experience of tenant {tenant!r}?", abort=True)
        store = _store()
        counts = store.tenant(tenant).purge()
        typer.echo(", ".join(f"{k}: {v}" for k, v in counts.items()))
        store.close()

    @exp.command("pii-eval")
    def pii_eval(
        show_errors: bool = typer.Option(False, help="List every missed or spurious span."),
    ) -> None:
        """Precision/recall of the offline anonymizer per entity type on the labelled evaluation set."""
        from rich.console import Console
        from rich.table import Table

        from blacksoil.experience.pii_eval import PRECISION_TARGET, RECALL_TARGET, evaluate

        res = evaluate()
        table = Table(title=f"PII evaluation ({res.n_examples} examples)")
        for c in ("entity", "tp", "fp", "fn", "precision", "recall"):
            table.add_column(c)
        for name, s in res.per_entity.items():
            table.add_row(name, str(s.tp), str(s.fp), str(s.fn), f"{s.precision:.3f}", f"{s.recall:.3f}")
        m = res.micro()
        table.add_row("ALL (micro)", str(m.tp), str(m.fp), str(m.fn), f"{m.precision:.3f}", f"{m.recall:.3f}")
        console = Console()
        console.print(table)
        if show_errors:
            for e in res.errors:
                console.print(f"{e['id']}: {e['error']} {e['type']} {e['text']!r}", highlight=False)
        ok = res.meets_targets()
        console.print(f"targets (recall ≥ {RECALL_TARGET} per entity, precision ≥ {PRECISION_TARGET}): "
                      f"{'met' if ok else 'NOT met'}")
        if not ok:
            raise typer.Exit(1)

    @bench.command("replay")
    def bench_replay(
        items: int = typer.Option(1_000_000, help="Items in the replay buffer."),
        batch: int = typer.Option(256, help="Batch size per sample call."),
        seconds: float = typer.Option(5.0, help="Seconds of sampling per measurement."),
        inserts: int = typer.Option(5000, help="Events inserted into each store."),
        pg_url: str | None = typer.Option(None, help="PostgreSQL URL (default: start a throwaway cluster)."),
        no_postgres: bool = typer.Option(False, help="Skip PostgreSQL."),
        write_doc: bool = typer.Option(False, "--write-doc", help=WRITE_DOC_HELP),
    ) -> None:
        """Replay sampling throughput at 1M items and store insert throughput (SQLite, PostgreSQL)."""
        from blacksoil.benchlog import destination, report
        from blacksoil.config import settings
        from blacksoil.errors import ConfigError
        from blacksoil.experience.bench import run

        if items < batch or batch < 1 or seconds <= 0 or inserts < 100:
            raise ConfigError(f"need items >= batch >= 1, seconds > 0, inserts >= 100 (got items={items}, "
                              f"batch={batch}, seconds={seconds}, inserts={inserts})")
        from blacksoil.experience.bench import plot_sweep, sampling_sweep

        res = run(items, batch, seconds, inserts, pg_url, start_pg=not no_postgres)
        sweep = sampling_sweep(items, batch, seconds / 2)
        dest = destination(settings().home, write_doc)
        path, image = dest.image("replay_sampling.png")
        plot_sweep(sweep, path)
        rows = [[k, v if v is not None else "n/a"] for k, v in res.items()]
        rows += [[f"samples_per_s at {n:,} items (sweep)", r] for n, r in sweep]
        report("Experience replay and store", ["metric", "value"], rows, res, images=[image], dest=dest,
               notes="Inserts: already-anonymized events (200 prompt + 50 completion token ids), 100 per "
                     "transaction; `acked_*` = one commit per event (the StoreSink path). Target: "
                     "samples_per_s ≥ 50,000 at 1M items.")
