"""Training samples: stored token ids of one attempt, its reward, group and replay importance weight.

Samples keep the engine's own token ids (no re-tokenization drift); `collate` masks the prompt out of the loss.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from blacksoil.errors import UserError


@dataclass(frozen=True)
class TrainSample:
    """One model call worth learning from (or learning away from)."""

    prompt_ids: tuple[int, ...]
    """Prompt token ids exactly as the engine saw them."""
    completion_ids: tuple[int, ...]
    """Completion token ids exactly as the engine produced them (the part the loss covers)."""
    reward: float = 1.0
    """Task reward of the attempt this call belongs to (1 = success)."""
    weight: float = 1.0
    """Importance weight from prioritized replay; multiplies this sample's loss."""
    group: str | None = None
    """Attempts at the same task share a group (for group-relative advantages)."""
    advantage: float = 1.0
    """Coefficient of the log-likelihood term: 1 for SFT, reward minus group mean (normalised) for GRPO."""
    trajectory: str | None = None
    """Session of the attempt this call belongs to: its calls train together (they share prompt prefixes)."""
    behaviour_logprobs: tuple[float, ...] | None = None
    """Log-probability of each completion token under the policy that produced it (the engine's, as stored);
    None when unknown (demonstrations, re-tokenized calls): the policy-gradient ratio then starts at 1."""

    def __post_init__(self) -> None:
        if not self.completion_ids:
            raise UserError("a training sample needs at least one completion token; drop empty completions")
        if not math.isfinite(self.weight) or self.weight < 0:
            raise UserError(f"importance weight {self.weight!r} must be finite and non-negative")
        if self.behaviour_logprobs is not None and len(self.behaviour_logprobs) != len(self.completion_ids):
            raise UserError(f"{len(self.behaviour_logprobs)} behaviour log-probabilities for "
                            f"{len(self.completion_ids)} completion tokens; give one per token or none")


def group_advantages(samples: Sequence[TrainSample], eps: float = 1e-6) -> list[TrainSample]:
    """GRPO-style advantages: (reward - group mean) / group std; groups without spread carry no signal."""
    by_group: dict[str | None, list[int]] = defaultdict(list)
    for i, s in enumerate(samples):
        by_group[s.group if s.group is not None else f"__single{i}"].append(i)
    out = list(samples)
    for idx in by_group.values():
        rewards = [samples[i].reward for i in idx]
        mean = sum(rewards) / len(rewards)
        std = math.sqrt(sum((r - mean) ** 2 for r in rewards) / len(rewards))
        for i in idx:
            adv = 0.0 if std < eps else (samples[i].reward - mean) / (std + eps)
            out[i] = replace(samples[i], advantage=adv)
    return [s for s in out if s.advantage != 0.0]


def sft_samples(samples: Sequence[TrainSample], min_reward: float = 1.0) -> list[TrainSample]:
    """Rejection sampling: keep the successful attempts, each with coefficient 1."""
    return [replace(s, advantage=1.0) for s in samples if s.reward >= min_reward]


def collate(samples: Sequence[TrainSample], max_len: int, pad_id: int) -> dict[str, Any]:
    """Right-padded tensors: input ids, attention mask, completion-token mask, per-sample coefficients.

    A sample longer than `max_len` loses prompt tokens from the left first (the completion is what we learn).
    """
    import torch

    rows: list[list[int]] = []
    masks: list[list[int]] = []
    for s in samples:
        comp = list(s.completion_ids)[: max_len - 1]
        prompt = list(s.prompt_ids)[-(max_len - len(comp)):] if max_len > len(comp) else []
        rows.append(prompt + comp)
        masks.append([0] * len(prompt) + [1] * len(comp))
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    attn = torch.zeros((len(rows), width), dtype=torch.long)
    loss_mask = torch.zeros((len(rows), width), dtype=torch.float32)
    for i, (r, m) in enumerate(zip(rows, masks, strict=True)):
        ids[i, : len(r)] = torch.tensor(r)
        attn[i, : len(r)] = 1
        loss_mask[i, : len(m)] = torch.tensor(m, dtype=torch.float32)
    coef = torch.tensor([s.weight * s.advantage for s in samples], dtype=torch.float32)
    return {"input_ids": ids, "attention_mask": attn, "loss_mask": loss_mask, "coef": coef}
