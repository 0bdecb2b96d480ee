"""Foundation: settings validation, the CLI's one-line errors and --help on every command."""

from __future__ import annotations

import subprocess
import sys

import pytest
from typer.testing import CliRunner

from blacksoil.cli import app
from blacksoil.config import load_settings
from blacksoil.errors import ConfigError


def test_settings_env_nested(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    monkeypatch.setenv("BLACKSOIL_HOME", str(tmp_path))
    s = load_settings()
    assert s.home == tmp_path


def test_settings_reject_unknown_key_naming_it(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    cfg = tmp_path / "blacksoil.toml"
    cfg.write_text("[serving]\nno_such_field = 3\n")
    monkeypatch.setenv("BLACKSOIL_CONFIG", str(cfg))
    with pytest.raises(ConfigError, match="no_such_field"):
        load_settings()


def _commands(group, prefix=()):  # type: ignore[no-untyped-def]
    import typer.main

    click_group = typer.main.get_command(group)
    stack = [(prefix, click_group)]
    while stack:
        path, cmd = stack.pop()
        yield path
        for name, sub in getattr(cmd, "commands", {}).items():
            stack.append(((*path, name), sub))


def test_every_command_has_help() -> None:
    runner = CliRunner()
    paths = list(_commands(app))
    assert len(paths) >= 1
    for path in paths:
        res = runner.invoke(app, [*path, "--help"])
        assert res.exit_code == 0, (path, res.output)
        assert "Usage" in res.output


def test_cli_entry_point_runs() -> None:
    out = subprocess.run([sys.executable, "-m", "blacksoil.cli", "--help"], capture_output=True, text=True)
    assert out.returncode == 0
    assert "blacksoil" in out.stdout
