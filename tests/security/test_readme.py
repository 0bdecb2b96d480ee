"""The security README's Python example runs as written and prints what its comments say."""

from __future__ import annotations

import contextlib
import io
import re
from importlib import resources


def test_readme_example_runs() -> None:
    text = (resources.files("blacksoil.security") / "README.md").read_text()
    (block,) = re.findall(r"```python\n(.*?)```", text, re.S)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(block, "README.md", "exec"), {})  # our own documentation example
    lines = out.getvalue().splitlines()
    assert lines[0] == "approval_required" and lines[2] == "allow"
