"""A GGUF dequantized into an fp32 Hugging Face folder (config, safetensors, tokenizer), written atomically.

The one conversion both sides use: the learner imports `export` (learning/basemodel.py), and vLLM's separate
environment, which has no blacksoil installed, runs this file as a script (serving/vllm_env.py). So it imports
nothing from blacksoil and only torch/transformers/gguf, which both environments have.

Run as `python hf_export.py MODEL.gguf TARGET_DIR`.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path


def export(gguf: Path, target: Path) -> None:
    """Write the fp32 HF copy of `gguf` to `target` (a rename, so readers never see half a folder).

    Raises ValueError/OSError/KeyError from transformers when it cannot read `gguf` as a model.
    """
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tmp = target.with_name(target.name + f".tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
    tok = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    # transformers marks GGUF-loaded models as quantized and then refuses save_pretrained.
    model.hf_quantizer = None  # type: ignore[assignment]
    model.is_quantized = False  # type: ignore[assignment]
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.save_pretrained(str(tmp))
    tok.save_pretrained(str(tmp))
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        tmp.rename(target)
    except OSError:
        # Another process finished first: its copy is as good as ours.
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: python hf_export.py MODEL.gguf TARGET_DIR")
    export(Path(sys.argv[1]), Path(sys.argv[2]))
