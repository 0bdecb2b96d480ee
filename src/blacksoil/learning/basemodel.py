"""The base model for training: a GGUF dequantized once into an fp32 HF folder, cached under BLACKSOIL_HOME.

transformers reads GGUF (slow: ~20-40 s); the cached safetensors folder loads in well under a second.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from blacksoil.errors import ConfigError
from blacksoil.serving.hf_export import export
from blacksoil.serving.models import default_model_path, validate_gguf
from blacksoil.serving.vllm_env import hf_checkpoint_dir

_lock = threading.Lock()


@dataclass(frozen=True)
class BaseModelInfo:
    """Where a base model comes from and where its fp32 HF copy lives."""

    gguf_path: Path
    """The GGUF the serving engine loads (and the adapter is applied to)."""
    hf_dir: Path
    """Dequantized fp32 HF folder (config, safetensors, tokenizer)."""
    n_head: int
    """Attention heads (for the RoPE row permutation of q)."""
    n_head_kv: int
    """Key/value heads (for the RoPE row permutation of k)."""
    n_layers: int
    """Transformer blocks."""
    architecture: str
    """HF model_type, e.g. `llama`."""


def resolve_gguf(path: str | Path | None) -> Path:
    """The GGUF to train on: `path` when given, else the shipped default model."""
    if path is None:
        return default_model_path()
    p = Path(path).expanduser().resolve()
    validate_gguf(p)
    return p


def _cache_dir(home: Path, gguf: Path) -> Path:
    # One formula for both: a vLLM deployment serves the very checkpoint the learner trains on.
    return hf_checkpoint_dir(home, gguf)


def ensure_hf_copy(home: Path, gguf_path: str | Path | None = None) -> BaseModelInfo:
    """Dequantize the GGUF into an fp32 HF folder once (atomic rename), then reuse it."""
    gguf = resolve_gguf(gguf_path)
    target = _cache_dir(home, gguf)
    with _lock:
        if not (target / "config.json").exists():
            _convert(gguf, target)
    return _info(gguf, target)


def _convert(gguf: Path, target: Path) -> None:
    try:
        export(gguf, target)
    except (ValueError, OSError, KeyError) as e:
        raise ConfigError(
            f"transformers cannot read {str(gguf)!r} as a GGUF model ({e}); pass a llama-family GGUF"
        ) from None


def _info(gguf: Path, hf_dir: Path) -> BaseModelInfo:
    import json

    cfg = json.loads((hf_dir / "config.json").read_text())
    n_head = int(cfg["num_attention_heads"])
    return BaseModelInfo(
        gguf_path=gguf, hf_dir=hf_dir, n_head=n_head, n_head_kv=int(cfg.get("num_key_value_heads", n_head)),
        n_layers=int(cfg["num_hidden_layers"]), architecture=str(cfg.get("model_type", "llama")),
    )


def load_model(info: BaseModelInfo) -> Any:
    """A fresh fp32 model from the cached folder (cheap: call once per trainer, never share one)."""
    import torch
    from transformers import AutoModelForCausalLM

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    model = AutoModelForCausalLM.from_pretrained(str(info.hf_dir), dtype=torch.float32)
    model.config.use_cache = False
    return model


def load_tokenizer(info: BaseModelInfo) -> Any:
    """The tokenizer saved beside the cached model (the same vocabulary as the GGUF)."""
    from transformers import AutoTokenizer

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    return AutoTokenizer.from_pretrained(str(info.hf_dir))


def info_from_gguf(gguf_path: str | Path | None = None) -> BaseModelInfo:
    """Shape facts read from the GGUF header alone (no dequantization): enough to export a LoRA for it."""
    import gguf

    path = resolve_gguf(gguf_path)
    reader = gguf.GGUFReader(str(path))
    arch = bytes(reader.fields["general.architecture"].parts[-1]).decode()

    def _int(key: str) -> int:
        field = reader.fields.get(f"{arch}.{key}")
        if field is None:
            raise ConfigError(f"GGUF {str(path)!r} lacks {arch}.{key}; pass a complete llama-family model")
        return int(field.parts[-1][0])

    n_head = _int("attention.head_count")
    kv = reader.fields.get(f"{arch}.attention.head_count_kv")
    return BaseModelInfo(gguf_path=path, hf_dir=Path(), n_head=n_head,
                         n_head_kv=int(kv.parts[-1][0]) if kv is not None else n_head,
                         n_layers=_int("block_count"), architecture=arch)
