"""From gateway experience to samples: the learner renders the prompt exactly as the engine saw it (same token
count as the engine reports), keeps the engine's completion ids, and oracle demonstrations are train-only."""

from __future__ import annotations

import json
from typing import Any

import openai
import pytest

from blacksoil.errors import ConfigError
from blacksoil.experience.sink import ListSink
from blacksoil.factories.env_settings import EnvSettings
from blacksoil.learning.collect import Attempt
from blacksoil.learning.dataset import attempt_samples, prompt_ids
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
    assert isinstance(gw.sink, ListSink)
    [event] = [e for e in gw.sink.events if e.session_id == "learn-test-1"]
    assert event.completion_token_ids, "the gateway should capture completion token ids"
    ids = prompt_ids(tokenizer, event)
    assert len(ids) == event.usage["prompt_tokens"], "prompt rendered differently from the engine"
    attempt = Attempt("t", "s", 0, "learn-test-1", 1.0, True, None, [event])
    [sample] = attempt_samples(tokenizer, attempt)
    assert sample.completion_ids == tuple(event.completion_token_ids) and sample.prompt_ids == ids


@pytest.mark.parametrize("extra", [{"parallel_tool_calls": False}, {"tool_choice": "required"}],
                         ids=["single-call", "required"])
def test_prompt_rendering_follows_the_request_fields(gw: GatewayHandle, tokenizer: Any,
                                                     extra: dict[str, Any]) -> None:
    """tool_choice and parallel_tool_calls change the system message: the learner renders what was sent."""
    client = openai.OpenAI(base_url=gw.openai_base_url, api_key="x", max_retries=0, timeout=120)
    session = f"learn-fields-{'-'.join(extra)}"
    client.chat.completions.create(model=gw.model, messages=[{"role": "user", "content": "What is 17 * 23?"}],
                                   tools=[TOOL], max_tokens=24, temperature=0, user=session,
                                   **extra)  # type: ignore[call-overload]
    [event] = [e for e in gw.sink.events if e.session_id == session]  # type: ignore[attr-defined]
    assert len(prompt_ids(tokenizer, event)) == event.usage["prompt_tokens"]


def test_oracle_demonstrations_are_tool_calls_of_train_tasks(tokenizer: Any, env_settings: EnvSettings) -> None:
    from blacksoil.agentscore import api

    attempts = demonstrations(tokenizer, ["tools-basic"], tasks_per_suite=3, settings=env_settings)
    assert len(attempts) == 3 and all(a.passed for a in attempts)
    first = attempt_samples(tokenizer, attempts[0])[0]
    payload = json.loads(tokenizer.decode(first.completion_ids).replace("<|im_end|>", ""))
    assert set(payload) == {"name", "arguments"}
    with pytest.raises(ConfigError, match="train tasks only"):
        oracle_attempt(tokenizer, api.list_tasks("tools-basic", "test")[0], env_settings)


def test_calls_longer_than_the_trainer_window_are_skipped_not_cut(tokenizer: Any, env_settings: EnvSettings) -> None:
    """A prompt cut from the left loses its tools and instruction: such calls are left out of training."""
    from blacksoil.agentscore import api

    task = next(t for t in api.list_tasks("manufacturing", "train") if t.id.startswith("mfg-take-down"))
    attempt = oracle_attempt(tokenizer, task, env_settings)
    full = attempt_samples(tokenizer, attempt)
    lengths = [len(s.prompt_ids) + len(s.completion_ids) for s in full]
    limit = sorted(lengths)[len(lengths) // 2]
    kept = attempt_samples(tokenizer, attempt, max_len=limit)
    assert 0 < len(kept) < len(full)
    assert all(len(s.prompt_ids) + len(s.completion_ids) <= limit for s in kept)
    assert all(s.trajectory == attempt.session_id for s in kept)  # they still pack together


def test_practice_demonstrations_add_fresh_train_instances(tokenizer: Any, env_settings: EnvSettings) -> None:
    shipped = demonstrations(tokenizer, ["tools-basic"], settings=env_settings)
    more = demonstrations(tokenizer, ["tools-basic"], practice_per_template=1, settings=env_settings)
    assert len(more) > len(shipped)
    assert {a.task_id for a in more} - {a.task_id for a in shipped} == {
        a.task_id for a in more if a.task_id.startswith("practice-")}
