"""The serving commands: models list/add/default (with a corrupt registry), serve's option errors."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from blacksoil.cli import app
from blacksoil.config import settings
from blacksoil.errors import ConfigError, NotFoundError
from blacksoil.serving.config import ServingConfig
from blacksoil.serving.models import DEFAULT_MODEL_NAME, ModelRegistry, default_model_path
from blacksoil.serving.server import serving_config


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("BLACKSOIL_HOME", str(tmp_path))
    settings.cache_clear()
    yield tmp_path  # type: ignore[misc]
    settings.cache_clear()


def test_models_list_add_default(home: Path) -> None:
    runner = CliRunner()
    out = runner.invoke(app, ["models", "list"])
    assert out.exit_code == 0 and DEFAULT_MODEL_NAME in out.output
    copy = home / "Tiny.gguf"
    copy.write_bytes(default_model_path().read_bytes())
    out = runner.invoke(app, ["models", "add", str(copy), "--name", "tiny"])
    assert out.exit_code == 0, out.output
    out = runner.invoke(app, ["models", "default", "tiny"])
    assert out.exit_code == 0 and out.output.startswith("tiny ")
    assert ModelRegistry(home).resolve(None).name == "tiny"


def test_models_errors_are_clear(home: Path) -> None:
    bad = home / "bad.gguf"
    bad.write_bytes(b"NOTGGUF" * 500)
    with pytest.raises(ConfigError, match="not a GGUF"):
        ModelRegistry(home).add(bad)
    with pytest.raises(NotFoundError, match="does not exist"):
        ModelRegistry(home).add(home / "missing.gguf")
    with pytest.raises(NotFoundError, match="not registered"):
        ModelRegistry(home).set_default("nope")
    reg = ModelRegistry(home)
    reg.file.parent.mkdir(parents=True, exist_ok=True)
    reg.file.write_text("{ not json")
    with pytest.raises(ConfigError, match="corrupt"):
        reg.list()
    out = CliRunner().invoke(app, ["models", "list"])
    assert out.exit_code != 0 and isinstance(out.exception, ConfigError)


def test_serve_option_errors_name_the_value() -> None:
    with pytest.raises(ConfigError, match="slots"):
        serving_config(ServingConfig(), {"slots": 0})
    with pytest.raises(ConfigError, match="concurrency"):
        serving_config(ServingConfig(), {"slots": 2, "concurrency": 4})
    with pytest.raises(ConfigError, match="policy"):
        serving_config(ServingConfig(), {"policy": "random"})
