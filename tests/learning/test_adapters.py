"""The adapter store: numbered immutable versions with checksums, a status log, and `blacksoil adapters list`."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from blacksoil.cli import app
from blacksoil.errors import ConfigError, NotFoundError
from blacksoil.learning.adapters import AdapterStore
from blacksoil.learning.basemodel import info_from_gguf
from blacksoil.learning.randomlora import write_random_peft


def test_publish_list_status_and_cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path / "home"
    monkeypatch.setenv("BLACKSOIL_HOME", str(home))
    from blacksoil.config import settings

    settings.cache_clear()
    info = info_from_gguf()
    store = AdapterStore(home, "smollm2-135m-instruct")
    v1 = store.publish(write_random_peft(tmp_path / "a", info, b_std=0.0), info)
    v2 = store.publish(write_random_peft(tmp_path / "b", info, b_std=0.01, seed=1), info, parent="v1")
    assert (v1.version, v2.version, v2.parent) == ("v1", "v2", "v1")
    assert v2.gguf_path is not None and v2.gguf_path.exists()
    assert v2.safetensors_dir is not None and (v2.safetensors_dir / "adapter_model.safetensors").exists()
    store.set_status("v2", "promoted", {"dev_overall": 0.5})
    assert store.get("v2").status == "promoted" and store.get("v2").metrics["dev_overall"] == 0.5
    assert store.promoted() is not None and store.promoted().version == "v2"  # type: ignore[union-attr]
    store.verify("v1")
    out = CliRunner().invoke(app, ["adapters", "list"])
    settings.cache_clear()
    assert out.exit_code == 0, out.output
    assert "v1" in out.output and "promoted" in out.output


def test_modified_adapter_is_detected_and_unknown_version_named(tmp_path: Path) -> None:
    info = info_from_gguf()
    store = AdapterStore(tmp_path, "m")
    av = store.publish(write_random_peft(tmp_path / "a", info, b_std=0.0), info)
    assert av.gguf_path is not None
    av.gguf_path.chmod(0o644)
    with av.gguf_path.open("ab") as f:
        f.write(b"tampered")
    with pytest.raises(ConfigError, match="modified after publication"):
        store.verify(av.version)
    with pytest.raises(NotFoundError, match=r"'v9'.*known: v1"):
        store.get("v9")
    with pytest.raises(ConfigError, match="status"):
        store.set_status("v1", "bogus")  # type: ignore[arg-type]
