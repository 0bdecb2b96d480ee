"""Using the product leaves the checkout clean: results and plots go under BLACKSOIL_HOME unless --write-doc."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from typer.testing import CliRunner

from blacksoil.benchlog import destination, docs_path
from blacksoil.cli import app
from blacksoil.config import settings

DOCS = Path(__file__).resolve().parents[1] / "docs"


def _fingerprint() -> dict[str, str]:
    return {str(p): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(DOCS.rglob("*")) if p.is_file()}


def test_default_destination_is_under_home(tmp_path: Path) -> None:
    assert destination(tmp_path).doc == tmp_path / "results" / "benchmarks.md"


def test_write_doc_destination_is_the_docs_file(tmp_path: Path) -> None:
    assert destination(tmp_path, write_doc=True).doc == docs_path()


def test_images_link_relative_to_the_entry(tmp_path: Path) -> None:
    assert destination(tmp_path).image("x.png") == (tmp_path / "results" / "img" / "x.png", "img/x.png")


def test_a_benchmark_run_leaves_docs_untouched() -> None:
    before = _fingerprint()
    res = CliRunner().invoke(app, ["sim", "--accelerators", "64", "--hours", "0.5", "--policy", "unified"])
    assert res.exit_code == 0, res.output
    assert _fingerprint() == before


def test_a_benchmark_run_records_under_home() -> None:
    res = CliRunner().invoke(app, ["sim", "--accelerators", "64", "--hours", "0.5", "--policy", "static"])
    assert res.exit_code == 0, res.output
    json.loads(res.output.strip().splitlines()[-1])
    results = settings().home / "results"
    assert "Unified scheduler simulation: 64 accelerators" in (results / "benchmarks.md").read_text()
    assert (results / "img" / "sim_allocation.png").stat().st_size > 1000
