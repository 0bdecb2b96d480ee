"""From collected attempts to training samples: prioritized replay picks attempts (with importance weights),
each picked attempt's model calls become samples carrying the engine's completion token ids.

The prompt is rendered exactly as the gateway renders it (serving.tools.plan_request, then the model's chat
template); the completion ids are the ones the engine produced, so the learned tokens never drift.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from blacksoil.contracts import ExperienceEvent
from blacksoil.experience.config import ExperienceConfig
from blacksoil.learning.collect import Attempt
from blacksoil.learning.samples import TrainSample, group_advantages, sft_samples


def prompt_ids(tokenizer: Any, event: ExperienceEvent) -> tuple[int, ...]:
    """Token ids of the prompt the engine saw for this model call."""
    from blacksoil.serving.tools import plan_request

    body: dict[str, Any] = {"messages": event.messages}
    if event.tools:
        body["tools"] = event.tools
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


def replay_samples(tokenizer: Any, attempts: Sequence[Attempt], *, draws: int, objective: str,
                   policy_version: int, seed: int = 0, max_len: int | None = None,
                   replay_config: ExperienceConfig | None = None) -> tuple[list[TrainSample], dict[str, float]]:
    """Draw `draws` attempts from prioritized replay and build the objective's samples; plus replay stats.

    SFT keeps successful attempts (rejection sampling); GRPO turns each task group's rewards into advantages.
    `replay_config` holds replay's parameters (the experience settings; None = their defaults).
    """
    from blacksoil.experience.replay import PrioritizedReplay

    by_session = {a.session_id: a for a in attempts}
    replay = PrioritizedReplay.from_config(replay_config or ExperienceConfig(), seed=seed)
    served = f"v{policy_version}" if policy_version else None
    replay.add_trajectories([a.trajectory(served) for a in attempts], now=time.time())
    batch = replay.sample(draws, policy_version)
    picked: list[TrainSample] = []
    for key, w in zip(batch.keys, batch.weights, strict=True):
        picked += attempt_samples(tokenizer, by_session[key], float(w), max_len)
    if objective == "grpo":
        # Advantages need every attempt of a group, not only the drawn ones: compute them over all attempts,
        # then keep the drawn samples' advantage with their importance weight.
        adv = {(s.group, s.completion_ids): s.advantage
               for s in group_advantages([s for a in attempts for s in attempt_samples(tokenizer, a, 1.0, max_len)])}
        samples = [TrainSample(s.prompt_ids, s.completion_ids, s.reward, s.weight, s.group,
                               adv[(s.group, s.completion_ids)], s.trajectory)
                   for s in picked if (s.group, s.completion_ids) in adv]
    else:
        samples = sft_samples(picked)
    stats = {"replay_items": float(len(replay)), "drawn": float(draws), "samples": float(len(samples)),
             "mean_weight": float(batch.weights.mean()) if len(batch.weights) else 0.0, "beta": batch.beta}
    return samples, stats
