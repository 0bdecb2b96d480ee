"""From model calls to training samples: the prompt as the engine saw it, the engine's completion token ids.

The prompt is rendered exactly as the gateway renders it (serving.tools.plan_request, then the model's chat
template); the completion ids are the ones the engine produced, so the learned tokens never drift.
"""

from __future__ import annotations

from typing import Any

from blacksoil.contracts import ExperienceEvent
from blacksoil.learning.collect import Attempt
from blacksoil.learning.samples import TrainSample


def prompt_ids(tokenizer: Any, event: ExperienceEvent) -> tuple[int, ...]:
    """Token ids of the prompt the engine saw for this model call."""
    from blacksoil.serving.tools import PROMPT_FIELDS, plan_request

    body: dict[str, Any] = {"messages": event.messages}
    if event.tools:
        body["tools"] = event.tools
    # tool_choice / parallel_tool_calls / response_format change the system message: render with what was sent.
    body |= {k: event.metadata[k] for k in PROMPT_FIELDS if k in event.metadata}
    _, engine_body = plan_request(body)
    ids = tokenizer.apply_chat_template(engine_body["messages"], tokenize=True, add_generation_prompt=True)
    if not isinstance(ids, list):
        ids = ids["input_ids"]
    return tuple(int(i) for i in ids)


def attempt_samples(tokenizer: Any, attempt: Attempt, weight: float = 1.0,
                    max_len: int | None = None) -> list[TrainSample]:
    """One sample per model call of the attempt that has completion token ids.

    Calls longer than `max_len` tokens (prompt + completion) are skipped rather than cut: a prompt cut from the
    left has lost its tools and instruction, and would teach the completion without its reason.
    """
    out = []
    for ev in attempt.calls:
        if not ev.completion_token_ids or ev.error:
            continue
        prompt = prompt_ids(tokenizer, ev)
        if max_len is not None and len(prompt) + len(ev.completion_token_ids) > max_len:
            continue
        out.append(TrainSample(prompt, tuple(ev.completion_token_ids), reward=attempt.reward,
                               weight=weight, group=attempt.task_id, trajectory=attempt.session_id))
    return out
