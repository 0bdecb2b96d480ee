"""Docs that quote a command quote the one the project runs; the design notes the code cites exist."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _recipe(target: str) -> list[str]:
    """The command lines of a Makefile target, `$(BIN)/` stripped and continuation lines joined."""
    text = (ROOT / "Makefile").read_text().replace("\\\n", " ")
    m = re.search(rf"^{re.escape(target)}:[^\n]*\n((?:\t[^\n]*\n)+)", text, re.M)
    assert m is not None, f"Makefile has no target {target}"
    return [" ".join(line.replace("$(BIN)/", "").split()) for line in m.group(1).splitlines()]


def test_learning_doc_quotes_the_demo_recipe() -> None:
    (demo,) = _recipe("demo")
    quoted = [" ".join(line.split()) for line in (ROOT / "docs" / "learning.md").read_text().splitlines()
              if line.startswith("blacksoil learn --demo")]
    assert quoted == [demo]


def test_readme_opens_with_the_two_commands() -> None:
    head = (ROOT / "README.md").read_text().split("```")[1]
    assert [line.split("#")[0].strip() for line in head.splitlines()[1:] if line.strip()] == ["make demo", "make test"]


def test_ci_runs_lint_then_the_tests() -> None:
    steps = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines() if line.startswith("make ")]
    assert steps == ["make lint", "make test"]


def test_design_notes_cited_by_the_code_exist() -> None:
    cited = [p for p in (ROOT / "src").rglob("*.py") if "DESIGN.md" in p.read_text()]
    assert cited == [] and (ROOT / "docs" / "design.md").exists()
