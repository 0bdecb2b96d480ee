"""Random peft LoRA folders written with numpy alone: harmless ones for swap benchmarks, damaging ones to prove
the eval gate rejects a worse candidate. Neither needs torch or the dequantized model.
"""

from __future__ import annotations

import json
from pathlib import Path

from blacksoil.learning.basemodel import BaseModelInfo

_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj")


def _hidden(info: BaseModelInfo) -> int:
    import gguf

    reader = gguf.GGUFReader(str(info.gguf_path))
    return int(reader.fields[f"{info.architecture}.embedding_length"].parts[-1][0])


def write_random_peft(out_dir: Path, info: BaseModelInfo, *, b_std: float, rank: int = 16, alpha: int = 32,
                      seed: int = 0) -> Path:
    """A peft adapter folder with lora_A ~ N(0, 1/rank) and lora_B ~ N(0, b_std²) on q, k, v, o of every layer.

    b_std 0.0 gives a no-op adapter (a new version with the base model's behaviour); ~0.1 wrecks the model.
    """
    import numpy as np
    from safetensors.numpy import save_file

    hidden = _hidden(info)
    head_dim = hidden // info.n_head
    out_features = {"q_proj": info.n_head * head_dim, "k_proj": info.n_head_kv * head_dim,
                    "v_proj": info.n_head_kv * head_dim, "o_proj": hidden}
    in_features = {"q_proj": hidden, "k_proj": hidden, "v_proj": hidden, "o_proj": info.n_head * head_dim}
    rng = np.random.default_rng(seed)
    tensors = {}
    for layer in range(info.n_layers):
        for m in _TARGETS:
            key = f"base_model.model.model.layers.{layer}.self_attn.{m}"
            tensors[f"{key}.lora_A.weight"] = (rng.standard_normal((rank, in_features[m])) / np.sqrt(rank)).astype(
                np.float32)
            tensors[f"{key}.lora_B.weight"] = (rng.standard_normal((out_features[m], rank)) * b_std).astype(np.float32)
    out_dir.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(out_dir / "adapter_model.safetensors"))
    (out_dir / "adapter_config.json").write_text(json.dumps({
        "peft_type": "LORA", "r": rank, "lora_alpha": alpha, "target_modules": list(_TARGETS), "lora_dropout": 0.0,
        "bias": "none", "task_type": "CAUSAL_LM", "base_model_name_or_path": str(info.gguf_path)}))
    return out_dir
