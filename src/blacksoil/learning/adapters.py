"""The adapter store: immutable published LoRA versions (GGUF + safetensors) under `<home>/adapters/<model>/`.

A version's files and manifest are written once and never changed; its lifecycle status lives in a separate log.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from blacksoil.contracts import AdapterStatus, AdapterVersion
from blacksoil.errors import ConfigError, NotFoundError
from blacksoil.learning.basemodel import BaseModelInfo
from blacksoil.learning.gguf_export import peft_to_gguf, read_peft

__all__ = ["AdapterStore"]

_STATUSES: tuple[AdapterStatus, ...] = ("candidate", "promoted", "rejected", "rolled_back")


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


class AdapterStore:
    """Publishes, lists and looks up adapter versions of one base model."""

    def __init__(self, home: Path, base_model: str) -> None:
        if not base_model or "/" in base_model:
            raise ConfigError(f"base model name {base_model!r} is invalid; use the registry name, e.g. smollm2-135m")
        self.base_model = base_model
        self.root = home / "adapters" / base_model
        self.status_log = self.root / "status.jsonl"

    def publish(self, peft_dir: Path, info: BaseModelInfo, *, parent: str | None = None,
                metrics: dict[str, float] | None = None, scale: float = 1.0,
                provenance: dict[str, Any] | None = None) -> AdapterVersion:
        """Copy the peft folder, convert it to GGUF and record a new candidate version (v1, v2, …).

        `provenance` (which tenants' data, which replay items and reward range trained it) is kept beside the
        manifest as provenance.json, read back by `provenance(version)`.
        """
        read_peft(peft_dir)  # fail early on a damaged folder
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = self.root / f".publishing-{os.getpid()}-{time.monotonic_ns()}"
        shutil.copytree(peft_dir, tmp / "peft")
        peft_to_gguf(tmp / "peft", info, tmp / "adapter.gguf")
        while True:
            # mkdir-style claim of the next name: two publishers never get the same version.
            version = f"v{self._next_number()}"
            try:
                tmp.rename(self.root / version)
                break
            except OSError:
                continue
        final = self.root / version
        av = AdapterVersion(version=version, base_model=self.base_model, gguf_path=final / "adapter.gguf",
                            safetensors_dir=final / "peft", parent=parent, metrics=dict(metrics or {}), scale=scale)
        manifest = {k: str(v) if isinstance(v, Path) else v for k, v in asdict(av).items()}
        manifest["sha256"] = {"adapter.gguf": _sha256(final / "adapter.gguf"),
                              "adapter_model.safetensors": _sha256(final / "peft" / "adapter_model.safetensors")}
        (final / "manifest.json").write_text(json.dumps(manifest, indent=2))
        (final / "provenance.json").write_text(json.dumps(provenance or {}, indent=2, default=str))
        for f in [final / "adapter.gguf", final / "manifest.json", final / "provenance.json",
                  *(final / "peft").iterdir()]:
            f.chmod(0o444)
        return av

    def provenance(self, version: str) -> dict[str, Any]:
        """What trained `version` (empty for versions published before provenance was recorded)."""
        self.get(version)  # NotFoundError naming the known versions
        path = self.root / version / "provenance.json"
        return json.loads(path.read_text()) if path.exists() else {}

    def _next_number(self) -> int:
        nums = [int(p.name[1:]) for p in self.root.iterdir() if p.name[:1] == "v" and p.name[1:].isdigit()]
        return max(nums, default=0) + 1

    def set_status(self, version: str, status: AdapterStatus, metrics: dict[str, float] | None = None) -> None:
        """Append a lifecycle change (the version's files stay untouched)."""
        if status not in _STATUSES:
            raise ConfigError(f"adapter status {status!r} is unknown; use one of {list(_STATUSES)}")
        self.get(version)
        with self.status_log.open("a") as f:
            f.write(json.dumps({"version": version, "status": status, "metrics": metrics or {}, "at": time.time()})
                    + "\n")
            f.flush()
            os.fsync(f.fileno())

    def _statuses(self) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        if self.status_log.exists():
            for line in self.status_log.read_text().splitlines():
                if line.strip():
                    rec = json.loads(line)
                    out[rec["version"]] = rec
        return out

    def timeline(self) -> list[dict[str, Any]]:
        """Every status change in order: {version, status, metrics, at} (promotions, rejections, rollbacks)."""
        if not self.status_log.exists():
            return []
        return [json.loads(line) for line in self.status_log.read_text().splitlines() if line.strip()]

    def get(self, version: str) -> AdapterVersion:
        """One version with its current status; NotFoundError lists the known ones."""
        manifest = self.root / version / "manifest.json"
        if not manifest.exists():
            known = ", ".join(v.version for v in self.list()) or "none"
            raise NotFoundError(f"adapter version {version!r} of {self.base_model!r} does not exist (known: {known})")
        return self._load(manifest, self._statuses())

    def _load(self, manifest: Path, statuses: dict[str, dict[str, Any]]) -> AdapterVersion:
        d = json.loads(manifest.read_text())
        d.pop("sha256", None)
        av = AdapterVersion(**{**d, "gguf_path": Path(d["gguf_path"]), "safetensors_dir": Path(d["safetensors_dir"])})
        rec = statuses.get(av.version)
        if rec is not None:
            av = replace(av, status=rec["status"], metrics={**av.metrics, **rec.get("metrics", {})})
        return av

    def list(self) -> list[AdapterVersion]:
        """All published versions, oldest first."""
        if not self.root.is_dir():
            return []
        statuses = self._statuses()
        found = [p / "manifest.json" for p in self.root.iterdir() if (p / "manifest.json").exists()]
        return sorted((self._load(m, statuses) for m in found), key=lambda a: int(a.version[1:]))

    def promoted(self) -> AdapterVersion | None:
        """The newest promoted version (what should be served), if any."""
        live = [a for a in self.list() if a.status == "promoted"]
        return live[-1] if live else None

    def verify(self, version: str) -> None:
        """Check the files still match the checksums written at publication."""
        d = json.loads((self.root / version / "manifest.json").read_text())
        final = self.root / version
        for name, path in (("adapter.gguf", final / "adapter.gguf"),
                           ("adapter_model.safetensors", final / "peft" / "adapter_model.safetensors")):
            if _sha256(path) != d["sha256"][name]:
                raise ConfigError(f"adapter {version!r} file {str(path)!r} was modified after publication; republish")
