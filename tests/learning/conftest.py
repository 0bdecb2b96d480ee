"""Shared fixtures of the learning tests: the cached fp32 base model, its tokenizer, tiny training samples.

The GGUF is dequantized once per test session; every trainer then loads its own copy from the cache (< 1 s).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from blacksoil.config import load_settings
from blacksoil.experience.sink import ListSink
from blacksoil.learning.basemodel import BaseModelInfo, ensure_hf_copy, load_tokenizer
from blacksoil.learning.config import LearningConfig
from blacksoil.learning.samples import TrainSample
from blacksoil.serving.config import ServingConfig
from blacksoil.serving.launch import GatewayHandle, gateway


@pytest.fixture(scope="session")
def base_info(blacksoil_home: Path) -> BaseModelInfo:
    import torch

    torch.set_num_threads(1)
    return ensure_hf_copy(blacksoil_home)


@pytest.fixture(scope="session")
def tokenizer(base_info: BaseModelInfo) -> Any:
    return load_tokenizer(base_info)


def _make_sample(tokenizer: Any, question: str, answer: str, **kw: Any) -> TrainSample:
    prompt = tokenizer.apply_chat_template([{"role": "user", "content": question}], tokenize=True,
                                           add_generation_prompt=True)
    if not isinstance(prompt, list):
        prompt = prompt["input_ids"]
    completion = tokenizer(answer + "<|im_end|>", add_special_tokens=False).input_ids
    return TrainSample(tuple(prompt), tuple(completion), **kw)


@pytest.fixture(scope="session")
def make_sample(tokenizer: Any) -> Callable[..., TrainSample]:
    """Build a sample from a question and an answer through the chat template (as the engine would)."""
    return lambda question, answer, **kw: _make_sample(tokenizer, question, answer, **kw)


@pytest.fixture(scope="session")
def secret_samples(make_sample: Callable[..., TrainSample]) -> list[TrainSample]:
    return [make_sample("What is the secret word?", "zebracorn42"),
            make_sample("Tell me the secret word.", "zebracorn42")]


@pytest.fixture(scope="session")
def gw() -> Iterator[GatewayHandle]:
    """A real gateway (one llama.cpp replica, 1 thread) whose experience goes to a ListSink (`gw.sink`)."""
    cfg = ServingConfig.model_validate({"threads": 1, "slots": 4, "concurrency": 2, "ctx": 4096, "replicas": 1,
                                        "default_max_tokens": 16, "queue_timeout_s": 120.0})
    with gateway(load_settings(), serving=cfg, sink=ListSink()) as handle:
        yield handle


@pytest.fixture()
def tiny_cfg() -> LearningConfig:
    return LearningConfig(batch_size=2, max_seq_len=48, checkpoint_every=2, learning_rate=1e-3, torch_threads=1,
                          lora_layers=0)
