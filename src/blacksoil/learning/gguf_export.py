"""Convert a peft LoRA folder into a llama.cpp GGUF LoRA adapter (f32, llama.cpp tensor names).

llama.cpp's converter permutes q/k projection rows for its RoPE layout and transformers undoes that when it
loads a GGUF, so lora_B of q_proj and k_proj must be permuted again here (as convert_lora_to_gguf.py does).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from blacksoil.errors import ConfigError
from blacksoil.learning.basemodel import BaseModelInfo

_MODULES = {"q_proj": "attn_q", "k_proj": "attn_k", "v_proj": "attn_v", "o_proj": "attn_output"}
_KEY = re.compile(r"layers\.(\d+)\.self_attn\.(q_proj|k_proj|v_proj|o_proj)\.lora_([AB])\.weight$")


def rope_permute(rows: Any, n_head: int) -> Any:
    """llama.cpp's LlamaModel.permute on the output rows: interleaved halves per head → llama.cpp's order."""
    return rows.reshape(n_head, 2, rows.shape[0] // n_head // 2, *rows.shape[1:]).swapaxes(1, 2).reshape(rows.shape)


def read_peft(adapter_dir: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """The adapter config and its tensors (numpy f32) from a peft folder."""
    from safetensors.numpy import load_file

    cfg_path, weights = adapter_dir / "adapter_config.json", adapter_dir / "adapter_model.safetensors"
    if not cfg_path.exists() or not weights.exists():
        raise ConfigError(
            f"{str(adapter_dir)!r} is not a peft adapter folder (needs adapter_config.json and "
            "adapter_model.safetensors); write it with save_pretrained"
        )
    return json.loads(cfg_path.read_text()), load_file(str(weights))


def peft_to_gguf(adapter_dir: Path, info: BaseModelInfo, out_path: Path) -> Path:
    """Write `out_path` (GGUF LoRA for llama.cpp) from the peft adapter in `adapter_dir`."""
    import gguf
    import numpy as np

    cfg, tensors = read_peft(adapter_dir)
    if info.architecture != "llama":
        raise ConfigError(f"GGUF LoRA export supports llama-architecture models, not {info.architecture!r}")
    pairs: dict[tuple[int, str], dict[str, Any]] = {}
    for key, value in tensors.items():
        m = _KEY.search(key)
        if m is None:
            raise ConfigError(f"adapter tensor {key!r} has no llama.cpp name; train LoRA on q/k/v/o projections only")
        pairs.setdefault((int(m.group(1)), m.group(2)), {})[m.group(3)] = value.astype(np.float32)
    writer = gguf.GGUFWriter(str(out_path), arch="llama")
    writer.add_type(gguf.GGUFType.ADAPTER)
    writer.add_string(gguf.Keys.Adapter.TYPE, "lora")
    writer.add_float32(gguf.Keys.Adapter.LORA_ALPHA, float(cfg["lora_alpha"]))
    for (layer, module), ab in sorted(pairs.items()):
        if set(ab) != {"A", "B"}:
            raise ConfigError(f"layer {layer} {module} has only lora_{next(iter(ab))}; the adapter folder is damaged")
        b = ab["B"]
        if module == "q_proj":
            b = rope_permute(b, info.n_head)
        elif module == "k_proj":
            b = rope_permute(b, info.n_head_kv)
        name = f"blk.{layer}.{_MODULES[module]}.weight"
        # numpy [r, in] / [out, r] become ggml ne [in, r] / [r, out]: what llama.cpp checks against the weight.
        writer.add_tensor(f"{name}.lora_a", np.ascontiguousarray(ab["A"]))
        writer.add_tensor(f"{name}.lora_b", np.ascontiguousarray(b))
    out_path.parent.mkdir(parents=True, exist_ok=True)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return out_path
