"""Resumable trainer checkpoints: LoRA weights, optimizer state, step and RNG states, written atomically.

A checkpoint folder appears only once complete (written under a temporary name, then renamed).
"""

from __future__ import annotations

import json
import os
import random
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from blacksoil.errors import ConfigError

_PREFIX = "ckpt-"


@dataclass(frozen=True)
class Checkpoint:
    """A finished checkpoint on disk."""

    step: int
    """Optimizer steps completed when it was written."""
    path: Path
    """Its folder."""


class Checkpointer:
    """Saves and finds checkpoints in one run folder, keeping the newest `keep`."""

    def __init__(self, run_dir: Path, keep: int = 2) -> None:
        self.run_dir = run_dir
        self.keep = keep

    def latest(self) -> Checkpoint | None:
        """The newest complete checkpoint, if any."""
        found = []
        if self.run_dir.is_dir():
            for p in self.run_dir.iterdir():
                if p.name.startswith(_PREFIX) and (p / "state.json").exists():
                    found.append(Checkpoint(int(p.name[len(_PREFIX):]), p))
        return max(found, key=lambda c: c.step, default=None)

    def save(self, step: int, lora_state: dict[str, Any], optimizer: Any, extra: dict[str, Any]) -> Checkpoint:
        """Write everything needed to continue exactly from `step`."""
        import numpy as np
        import torch

        final = self.run_dir / f"{_PREFIX}{step:07d}"
        tmp = self.run_dir / f".tmp-{step:07d}-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        torch.save({k: v.detach().clone() for k, v in lora_state.items()}, tmp / "lora.pt")
        torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
        torch.save({"torch": torch.get_rng_state(), "python": random.getstate(), "numpy": np.random.get_state()},
                   tmp / "rng.pt")
        (tmp / "state.json").write_text(json.dumps({"step": step, **extra}))
        _fsync_dir(tmp)
        shutil.rmtree(final, ignore_errors=True)
        tmp.rename(final)
        self._prune()
        return Checkpoint(step, final)

    def load(self, ckpt: Checkpoint, optimizer: Any) -> tuple[dict[str, Any], dict[str, Any]]:
        """Restore optimizer and RNG states in place; return (LoRA state dict, state.json)."""
        import numpy as np
        import torch

        try:
            lora = torch.load(ckpt.path / "lora.pt", weights_only=True)
            optimizer.load_state_dict(torch.load(ckpt.path / "optimizer.pt", weights_only=True))
            rng = torch.load(ckpt.path / "rng.pt", weights_only=False)
            state = json.loads((ckpt.path / "state.json").read_text())
        except (OSError, RuntimeError, ValueError) as e:
            raise ConfigError(
                f"checkpoint {str(ckpt.path)!r} is unreadable ({e}); delete that folder to resume from an older one"
            ) from None
        torch.set_rng_state(rng["torch"])
        random.setstate(rng["python"])
        np.random.set_state(rng["numpy"])
        return lora, state

    def _prune(self) -> None:
        ckpts = sorted(
            (p for p in self.run_dir.iterdir() if p.name.startswith(_PREFIX)), key=lambda p: p.name, reverse=True
        )
        for old in ckpts[self.keep:]:
            shutil.rmtree(old, ignore_errors=True)


def _fsync_dir(path: Path) -> None:
    for f in path.iterdir():
        with f.open("rb") as fh:
            os.fsync(fh.fileno())
