"""Chunked prefill (serving.prefill_chunk): a long prompt no longer stalls the streams being decoded next to it."""

from __future__ import annotations

import random
import threading
import time

import httpx
import pytest

from blacksoil.config import load_settings
from blacksoil.errors import ConfigError
from blacksoil.serving.engine import LlamaCppEngine
from blacksoil.serving.models import default_model_path
from blacksoil.serving.worker import build_params

_WORDS = ("lathe", "press", "spindle", "bearing", "coolant", "torque", "sensor", "shift", "operator", "vibration",
          "gearbox", "welder")


def test_the_chunk_is_llama_cpps_batch() -> None:
    p = build_params({"model_path": "m.gguf", "slots": 2, "ctx": 2048, "threads": 1, "prefill_chunk": 48})
    assert p.n_batch == 48


def test_the_default_chunk_keeps_llama_cpps_own_batches() -> None:
    p = build_params({"model_path": "m.gguf", "slots": 2, "ctx": 2048, "threads": 1})
    assert (p.n_batch, p.n_ubatch) == (2048, 512)


def test_a_chunk_too_small_to_batch_is_refused_naming_the_field() -> None:
    with pytest.raises(ConfigError, match="prefill_chunk"):
        load_settings(serving={"prefill_chunk": 4})


def _long_prompt(words: int, seed: int) -> str:
    rnd = random.Random(seed)  # random words, another seed per prompt: no cached prefix shortens a prefill
    return " ".join(rnd.choice(_WORDS) for _ in range(words))


def _prefill_s(engine: LlamaCppEngine, prompt: str) -> float:
    t = time.perf_counter()
    r = httpx.post(engine.api_base + "/chat/completions", timeout=300,
                   headers={"Authorization": f"Bearer {engine.api_key}"},
                   json={"messages": [{"role": "user", "content": prompt}], "max_tokens": 1})
    r.raise_for_status()
    return time.perf_counter() - t


def _gaps_while(engine: LlamaCppEngine, during: threading.Thread) -> list[float]:
    """Token gaps of one stream decoding while `during` runs (started once the stream's tokens flow)."""
    gaps: list[float] = []
    body = {"messages": [{"role": "user", "content": "Write a long story about a machine shop."}],
            "max_tokens": 400, "stream": True}
    with httpx.stream("POST", engine.api_base + "/chat/completions", json=body, timeout=300,
                      headers={"Authorization": f"Bearer {engine.api_key}"}) as r:
        last = None
        for line in r.iter_lines():
            if not (line.startswith("data: ") and '"content"' in line):
                continue
            now = time.perf_counter()
            if last is not None:
                gaps.append(now - last)
                if len(gaps) == 5:
                    during.start()
            last = now
            if len(gaps) > 5 and not during.is_alive():
                break
    during.join()
    return gaps


def test_a_long_prompt_is_prefilled_between_the_tokens_of_a_running_stream() -> None:
    engine = LlamaCppEngine(default_model_path(), slots=2, ctx=4096, threads=1, prefill_chunk=32)
    engine.start()
    try:
        alone = _prefill_s(engine, _long_prompt(300, seed=1))
        prompt = _long_prompt(300, seed=2)  # as long, another text: nothing of it is cached
        gaps = _gaps_while(engine, threading.Thread(target=_prefill_s, args=(engine, prompt)))
    finally:
        engine.stop()
    # Unchunked, the stream would wait for the whole prompt (one gap of about `alone`); chunked, for 32 tokens of it.
    assert max(gaps) < alone / 3, f"longest gap {max(gaps):.2f} s, prompt alone {alone:.2f} s"
