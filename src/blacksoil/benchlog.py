"""Shared output of every benchmark: a readable table, a markdown entry with its plots, a final JSON line.

Benchmarks call `report(...)` once at the end so every pillar records results the same way. Where the entry and
plots go is a `Destination`: by default `$BLACKSOIL_HOME/results/` (using the product leaves the checkout clean);
`--write-doc` records them in the checkout's docs/benchmarks.md and docs/img/ on purpose.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table


def machine_description() -> str:
    """One line describing the machine (cores, memory, CPU model, GPU if any)."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem_gib = 0.0
    try:
        with open("/proc/meminfo") as f:
            mem_gib = int(f.readline().split()[1]) / 2**20
    except (OSError, ValueError, IndexError):
        pass
    return f"{os.cpu_count()} cores ({cpu}), {mem_gib:.0f} GiB RAM, {platform.system()} {platform.machine()}"


WRITE_DOC_HELP = ("Record the result in the checkout's docs/benchmarks.md (plots in docs/img) instead of "
                  "$BLACKSOIL_HOME/results/.")


@dataclass(frozen=True)
class Destination:
    """Where a run's markdown entry goes; its plots go to `img/` beside it and are linked relatively."""

    doc: Path
    """The markdown file entries are appended to."""

    @property
    def img(self) -> Path:
        """The folder plots are written to."""
        return self.doc.parent / "img"

    def image(self, name: str) -> tuple[Path, str]:
        """Where to write plot `name` (a file name), and the link to it from the markdown file."""
        return self.img / name, f"img/{name}"


def destination(home: Path, write_doc: bool = False) -> Destination:
    """The checkout's docs/ when recording on purpose, else `home/results/` (results never dirty the checkout)."""
    if write_doc:
        return Destination(docs_path())
    return Destination(home / "results" / "benchmarks.md")


def docs_path() -> Path:
    """docs/benchmarks.md of the checkout we run from (env BLACKSOIL_BENCH_DOC overrides)."""
    env = os.environ.get("BLACKSOIL_BENCH_DOC")
    if env:
        return Path(env)
    here = Path(__file__).resolve()
    for parent in here.parents:
        if (parent / "pyproject.toml").exists() and (parent / "docs").is_dir():
            return parent / "docs" / "benchmarks.md"
    return Path.cwd() / "docs" / "benchmarks.md"


def _git_rev() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=5,
            cwd=Path(__file__).parent,
        )
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A GitHub-flavoured markdown table."""
    fmt = [str(h) for h in headers]
    lines = ["| " + " | ".join(fmt) + " |", "|" + "|".join("---" for _ in fmt) + "|"]
    lines += ["| " + " | ".join(_cell(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def _cell(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def report(
    title: str,
    headers: Sequence[str],
    rows: Sequence[Sequence[Any]],
    result: dict[str, Any],
    *,
    command: str | None = None,
    notes: str = "",
    images: Sequence[str] = (),
    dest: Destination,
) -> None:
    """Print the table, append an entry to `dest` (images are links relative to it), then the JSON line last."""
    console = Console()
    table = Table(title=title)
    for h in headers:
        table.add_column(str(h))
    for r in rows:
        table.add_row(*(_cell(c) for c in r))
    console.print(table)
    cmd = command or "blacksoil " + " ".join(sys.argv[1:])
    now = _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    entry = [
        f"\n## {title}\n",
        f"- command: `{cmd}`",
        f"- machine: {machine_description()}",
        f"- date: {now}, commit {_git_rev()}",
        "",
        markdown_table(headers, rows),
        "",
    ]
    if notes:
        entry += [notes, ""]
    entry += [f"![{Path(i).stem}]({i})" for i in images]
    entry += ["", "```json", json.dumps(result, sort_keys=True), "```", ""]
    dest.doc.parent.mkdir(parents=True, exist_ok=True)
    with dest.doc.open("a") as f:
        f.write("\n".join(entry))
    console.print(f"[dim]recorded in {dest.doc}[/dim]")
    # The JSON line must be the very last line of output.
    sys.stdout.flush()
    print(json.dumps(result, sort_keys=True), flush=True)
