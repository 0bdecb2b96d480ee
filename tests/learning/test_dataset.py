"""From gateway experience to samples: the learner renders the prompt exactly as the engine saw it (same token
count as the engine reports), keeps the engine's completion ids, and oracle demonstrations are train-only."""

from __future__ import annotations

import json
from typing import Any

import openai
import pytest

from blacksoil.errors import ConfigError
from blacksoil.learning.collect import Attempt, CaptureSink
from blacksoil.learning.dataset import attempt_samples, prompt_ids, replay_samples
from blacksoil.learning.demos import demonstrations, oracle_attempt
from blacksoil.serving.launch import GatewayHandle

TOOL = {"type": "function", "function": {"name": "calculator", "description": "Evaluate arithmetic.",
                                         "parameters": {"type": "object",
                                                        "properties": {"expression": {"type": "string"}}}}}


def test_prompt_rendering_matches_the_engine(gw: GatewayHandle, tokenizer: Any) -> None:
    client = openai.OpenAI(base_url=gw.openai_base_url, api_key="x", max_retries=0, timeout=120)
    messages = [{"role": "system", "content": "Use the tools."}, {"role": "user", "content": "What is 17 * 23?"}]
    client.chat.completions.create(model=gw.model, messages=messages, tools=[TOOL], max_tokens=24, temperature=0,
                                   user="learn-test-1")  # type: ignore[arg-type]
    assert isinstance(gw.sink, CaptureSink)
    [event] = gw.sink.take("learn-test-1")
    assert event.completion_token_ids, "the gateway should capture completion token ids"
    ids = prompt_ids(tokenizer, event)
    assert len(ids) == event.usage["prompt_tokens"], "prompt rendered differently from the engine"
    attempt = Attempt("t", "s", 0, "learn-test-1", 1.0, True, None, [event])
    [sample] = attempt_samples(tokenizer, attempt)
    assert sample.completion_ids == tuple(event.completion_token_ids) and sample.prompt_ids == ids


def test_oracle_demonstrations_are_tool_calls_of_train_tasks(tokenizer: Any) -> None:
    from blacksoil.agentscore import api

    attempts = demonstrations(tokenizer, ["tools-basic"], tasks_per_suite=3)
    assert len(attempts) == 3 and all(a.passed for a in attempts)
    first = attempt_samples(tokenizer, attempts[0])[0]
    payload = json.loads(tokenizer.decode(first.completion_ids).replace("<|im_end|>", ""))
    assert set(payload) == {"name", "arguments"}
    with pytest.raises(ConfigError, match="train tasks only"):
        oracle_attempt(tokenizer, api.list_tasks("tools-basic", "test")[0])


def test_replay_weights_reach_the_samples(tokenizer: Any) -> None:
    attempts = demonstrations(tokenizer, ["tools-basic"], tasks_per_suite=4)
    failed = Attempt("x", "tools-basic", 0, "failed-1", 0.0, False, None, attempts[0].calls)
    samples, stats = replay_samples(tokenizer, [*attempts, failed], draws=16, objective="sft", policy_version=0)
    assert samples and all(s.reward >= 1.0 for s in samples)  # rejection sampling drops the failure
    assert all(0 < s.weight <= 1.0 for s in samples) and stats["drawn"] == 16


def test_calls_longer_than_the_trainer_window_are_skipped_not_cut(tokenizer: Any) -> None:
    """A prompt cut from the left loses its tools and instruction: such calls are left out of training."""
    from blacksoil.agentscore import api

    task = next(t for t in api.list_tasks("manufacturing", "train") if t.id.startswith("mfg-take-down"))
    attempt = oracle_attempt(tokenizer, task)
    full = attempt_samples(tokenizer, attempt)
    lengths = [len(s.prompt_ids) + len(s.completion_ids) for s in full]
    limit = sorted(lengths)[len(lengths) // 2]
    kept = attempt_samples(tokenizer, attempt, max_len=limit)
    assert 0 < len(kept) < len(full)
    assert all(len(s.prompt_ids) + len(s.completion_ids) <= limit for s in kept)
    assert all(s.trajectory == attempt.session_id for s in kept)  # they still pack together


def test_practice_demonstrations_add_fresh_train_instances(tokenizer: Any) -> None:
    shipped = demonstrations(tokenizer, ["tools-basic"])
    more = demonstrations(tokenizer, ["tools-basic"], practice_per_template=1)
    assert len(more) > len(shipped)
    assert {a.task_id for a in more} - {a.task_id for a in shipped} == {
        a.task_id for a in more if a.task_id.startswith("practice-")}
