"""The GGUF LoRA export: llama.cpp loads it, it changes outputs, and (thanks to the RoPE row permutation of
q/k lora_B) llama.cpp with the adapter agrees with the merged HF model — the unpermuted export does not."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from blacksoil.learning import gguf_export
from blacksoil.learning.basemodel import BaseModelInfo, load_model

PROMPT = "The capital of France is Paris. The capital of Germany is"


@pytest.fixture(scope="module")
def random_adapter(base_info: BaseModelInfo, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Any]:
    """A peft adapter with a random lora_B big enough to move the logits; and its HF model."""
    import torch
    from peft import LoraConfig, get_peft_model

    model = get_peft_model(load_model(base_info), LoraConfig(
        r=16, lora_alpha=32, target_modules=["q_proj", "k_proj", "v_proj", "o_proj"]))
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.copy_(torch.randn(p.shape, generator=g) * 0.08)
    out = tmp_path_factory.mktemp("rand-adapter")
    model.save_pretrained(str(out))
    return out, model


def _hf_logprobs(model: Any, ids: list[int]) -> Any:
    import torch

    with torch.no_grad():
        return torch.log_softmax(model(input_ids=torch.tensor([ids])).logits[0, -1], -1)


def _llamacpp_top(gguf_model: Path, ids: list[int], lora: Path | None) -> dict[int, float]:
    """Top-20 next-token logprobs from llama.cpp (xllamacpp's embedded server), optionally with a LoRA."""
    import xllamacpp as x

    p = x.CommonParams()
    p.model.path = str(gguf_model)
    p.n_ctx, p.n_parallel, p.port = 256, 1, 0
    p.cpuparams.n_threads = p.cpuparams_batch.n_threads = 1
    if lora is not None:
        info = x.CommonAdapterLoraInfo()
        info.path, info.scale = str(lora), 1.0
        p.lora_adapters = [info]
    server = x.Server(p)
    try:
        r = httpx.post(f"{server.listening_address}/completion", timeout=120, json={
            "prompt": ids, "n_predict": 1, "n_probs": 20, "temperature": 0, "cache_prompt": False})
        r.raise_for_status()
        top = r.json()["completion_probabilities"][0]["top_logprobs"]
        return {int(t["id"]): float(t["logprob"]) for t in top}
    finally:
        del server


def _distance(hf: Any, cpp: dict[int, float], k: int = 5) -> float:
    """Mean |logprob difference| over HF's top-k tokens (tokens missing from llama.cpp's top-20 count as -20)."""
    top = hf.topk(k).indices.tolist()
    return sum(abs(float(hf[i]) - cpp.get(i, -20.0)) for i in top) / k


def test_gguf_adapter_loads_in_llamacpp_matches_hf_and_changes_outputs(
        base_info: BaseModelInfo, tokenizer: Any, random_adapter: tuple[Path, Any], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    import gguf

    peft_dir, model = random_adapter
    out = gguf_export.peft_to_gguf(peft_dir, base_info, tmp_path / "a.gguf")
    reader = gguf.GGUFReader(str(out))
    names = {t.name for t in reader.tensors}
    assert {"blk.0.attn_q.weight.lora_a", "blk.29.attn_output.weight.lora_b"} <= names
    assert len(names) == base_info.n_layers * 4 * 2
    assert bytes(reader.fields["adapter.type"].parts[-1]).decode() == "lora"

    monkeypatch.setattr(gguf_export, "rope_permute", lambda rows, n_head: rows)
    unpermuted = gguf_export.peft_to_gguf(peft_dir, base_info, tmp_path / "unpermuted.gguf")
    monkeypatch.undo()

    ids = tokenizer(PROMPT).input_ids
    hf_lora = _hf_logprobs(model, ids)
    with model.disable_adapter():
        hf_base = _hf_logprobs(model, ids)
    cpp_base = _llamacpp_top(base_info.gguf_path, ids, None)
    cpp_lora = _llamacpp_top(base_info.gguf_path, ids, out)
    cpp_wrong = _llamacpp_top(base_info.gguf_path, ids, unpermuted)

    # The adapter changes llama.cpp's output distribution…
    assert _distance(hf_lora, cpp_base) > 0.5
    # …to what the HF model with the same adapter computes (the base Q4_1 vs fp32 gap is the noise floor)…
    assert _distance(hf_lora, cpp_lora) < _distance(hf_base, cpp_base) + 0.15
    # …and the permutation is what makes it agree.
    assert _distance(hf_lora, cpp_lora) < _distance(hf_lora, cpp_wrong)


def test_damaged_adapter_folder_is_a_clear_error(base_info: BaseModelInfo, tmp_path: Path) -> None:
    from blacksoil.errors import ConfigError

    with pytest.raises(ConfigError, match="not a peft adapter folder"):
        gguf_export.peft_to_gguf(tmp_path, base_info, tmp_path / "x.gguf")
