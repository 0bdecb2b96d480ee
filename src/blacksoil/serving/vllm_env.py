"""Where vLLM runs from: its separate environment (.venv-vllm, `make vllm-env`) and the HF checkpoint it serves.

The checkpoint is written once from the registry's GGUF by that environment's transformers (the product's own
install needs no torch to serve) into the folder the learner trains from, so both use the very same weights.
"""

from __future__ import annotations

import hashlib
import logging
import os
import subprocess
from pathlib import Path

from blacksoil.errors import ConfigError, InternalError
from blacksoil.serving.config import VllmConfig

log = logging.getLogger(__name__)

VLLM_ENV_FIX = "create it with `make vllm-env` (tools/vllm-env.sh), or set serving.vllm.python"

# Run by the vLLM environment's python as a script (it has no blacksoil installed): the one conversion the learner
# uses too (learning/basemodel.py imports it), into the same cache folder.
_EXPORT = Path(__file__).with_name("hf_export.py")


def vllm_python(cfg: VllmConfig) -> Path:
    """The vLLM environment's python: serving.vllm.python, else .venv-vllm in the working dir or the checkout."""
    if cfg.python:
        candidates = [Path(cfg.python).expanduser()]
    else:
        checkout = Path(__file__).resolve().parents[3]  # src/blacksoil/serving/vllm.py -> the source checkout
        candidates = [Path.cwd() / ".venv-vllm" / "bin" / "python", checkout / ".venv-vllm" / "bin" / "python"]
    for p in candidates:
        if p.is_file() and os.access(p, os.X_OK):
            return p
    tried = ", ".join(repr(str(p)) for p in candidates)
    raise ConfigError(f"the vLLM environment is missing (no python at {tried}); {VLLM_ENV_FIX}")


def hf_checkpoint_dir(home: Path, gguf: Path) -> Path:
    """Where the HF copy of `gguf` lives; learning/basemodel.py caches its copy here too, so the learner trains on
    the very checkpoint vLLM serves."""
    st = gguf.stat()
    key = hashlib.sha256(f"{gguf}:{st.st_size}:{st.st_mtime_ns}".encode()).hexdigest()[:12]
    return home / "models" / "hf-cache" / f"{gguf.stem}-{key}"


def ensure_hf_checkpoint(home: Path, gguf: Path, python: Path, timeout_s: float = 900.0) -> Path:
    """The HF checkpoint of `gguf`, dequantized once by the vLLM environment (~45 s), then reused."""
    target = hf_checkpoint_dir(home, gguf)
    if (target / "config.json").exists():
        return target
    log.info("writing the HF checkpoint of %s to %s (once)", gguf, target)
    try:
        res = subprocess.run([str(python), str(_EXPORT), str(gguf), str(target)], capture_output=True, text=True,
                             timeout=timeout_s, env=os.environ | {"HF_HUB_OFFLINE": "1"})
    except subprocess.TimeoutExpired:
        raise InternalError(f"writing the HF checkpoint of {str(gguf)!r} took over {timeout_s:.0f} s; "
                            "check free memory and disk") from None
    if res.returncode != 0 or not (target / "config.json").exists():
        tail = " | ".join(res.stderr.strip().splitlines()[-3:])
        raise ConfigError(f"the vLLM environment could not convert {str(gguf)!r} to an HF checkpoint ({tail}); "
                          f"pass a llama-family GGUF, or recreate the environment: {VLLM_ENV_FIX}")
    return target
