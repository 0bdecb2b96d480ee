"""`blacksoil learn` refuses bad suite choices with one line naming the value, before starting anything."""

from __future__ import annotations

import subprocess
import sys

import pytest


@pytest.mark.parametrize(("args", "needle"), [
    (["--suites", "tools-basic,nope"], "suite 'nope' does not exist"),
    (["--held-out", "cooking"], "suite 'cooking' does not exist"),
    (["--suites", "tools-basic", "--held-out", "tools-basic"], "cannot be both learned and held out"),
])
def test_bad_suites_are_refused_in_one_line(args: list[str], needle: str) -> None:
    res = subprocess.run([sys.executable, "-m", "blacksoil.cli", "learn", *args], capture_output=True, text=True,
                         timeout=120)
    assert res.returncode != 0
    assert needle in res.stderr + res.stdout
    assert "Traceback" not in res.stderr
