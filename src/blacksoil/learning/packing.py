"""Prefix-sharing packed batches: the model calls of one agent trajectory share one forward pass.

Call j of a trajectory sees the prompt of call j-1 plus one more turn, so its prompt starts with every earlier
prompt. A packed row holds the longest prompt once (the trunk) and, for each call, a branch: the last token of
that call's prompt followed by its completion, at the positions the engine saw them, attending to the trunk up to
that prompt's end and to itself only (a 4D mask). Each call's loss is exactly what it would be alone (a test
checks it), while a 10-call trajectory costs one ~1,000-token pass instead of ten passes totalling ~7,000.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from blacksoil.learning.samples import TrainSample


@dataclass
class _Row:
    trunk: list[int]
    members: list[int] = field(default_factory=list)
    """Indices of the samples whose branches live in this row."""

    def width(self, samples: Sequence[TrainSample]) -> int:
        return len(self.trunk) + sum(len(samples[i].completion_ids) for i in self.members)


def _fit(s: TrainSample, max_len: int) -> TrainSample:
    """A sample that fits `max_len` alone: the prompt loses tokens from the left first (completion is learned)."""
    comp = s.completion_ids[: max_len - 1]
    keep = max(1, max_len - len(comp))
    behaviour = s.behaviour_logprobs[: len(comp)] if s.behaviour_logprobs is not None else None
    return TrainSample(s.prompt_ids[-keep:], comp, s.reward, s.weight, s.group, s.advantage, s.trajectory, behaviour)


def pack(samples: Sequence[TrainSample], max_len: int) -> tuple[list[_Row], list[TrainSample]]:
    """Group samples into rows: a sample joins a row whose trunk starts with its prompt and that has room left.

    Returns the rows and the samples as packed (over-long ones shortened from the left of the prompt).
    """
    fitted = [_fit(s, max_len) if len(s.prompt_ids) + len(s.completion_ids) > max_len else s for s in samples]
    order = sorted(range(len(fitted)), key=lambda i: -len(fitted[i].prompt_ids))
    rows: list[_Row] = []
    for i in order:
        s = fitted[i]
        for row in rows:
            n = len(s.prompt_ids)
            if row.trunk[:n] == list(s.prompt_ids) and row.width(fitted) + len(s.completion_ids) <= max_len:
                row.members.append(i)
                break
        else:
            rows.append(_Row(list(s.prompt_ids), [i]))
    for row in rows:
        row.members.sort()
    return rows, fitted


def collate_packed(samples: Sequence[TrainSample], max_len: int, pad_id: int) -> dict[str, Any]:
    """Tensors for `objectives.sequence_nll`: ids, 4D additive mask, positions, per-token owner sample and label.

    `owner[r, p]` is the index of the sample whose completion token `labels[r, p]` is predicted at position p
    (-1 where nothing is learned).
    """
    import torch

    rows, fitted = pack(samples, max_len)
    width = max(r.width(fitted) for r in rows)
    n_rows = len(rows)
    ids = torch.full((n_rows, width), pad_id, dtype=torch.long)
    pos = torch.zeros((n_rows, width), dtype=torch.long)
    owner = torch.full((n_rows, width), -1, dtype=torch.long)
    labels = torch.zeros((n_rows, width), dtype=torch.long)
    behaviour = torch.full((n_rows, width), float("nan"), dtype=torch.float32)  # NaN = unknown
    allowed = torch.zeros((n_rows, width, width), dtype=torch.bool)
    for r, row in enumerate(rows):
        t = len(row.trunk)
        ids[r, :t] = torch.tensor(row.trunk)
        pos[r, :t] = torch.arange(t)
        allowed[r, :t, :t] = torch.ones((t, t), dtype=torch.bool).tril()
        at = t
        for i in row.members:
            s = fitted[i]
            n, c = len(s.prompt_ids), len(s.completion_ids)
            # Inputs: the prompt's last token (a copy of trunk[n-1], same position, same context) + completion[:-1].
            ids[r, at : at + c] = torch.tensor([s.prompt_ids[-1], *s.completion_ids[:-1]])
            pos[r, at : at + c] = torch.arange(n - 1, n - 1 + c)
            labels[r, at : at + c] = torch.tensor(s.completion_ids)
            owner[r, at : at + c] = i
            if s.behaviour_logprobs is not None:
                behaviour[r, at : at + c] = torch.tensor(s.behaviour_logprobs, dtype=torch.float32)
            allowed[r, at : at + c, : n - 1] = True
            allowed[r, at : at + c, at : at + c] = torch.ones((c, c), dtype=torch.bool).tril()
            at += c
        for p in range(at, width):  # padding attends to itself only (a fully masked row would give NaN)
            allowed[r, p, p] = True
    mask = torch.zeros((n_rows, 1, width, width), dtype=torch.float32)
    mask.masked_fill_(~allowed.unsqueeze(1), torch.finfo(torch.float32).min)
    coef = torch.tensor([s.weight * s.advantage for s in fitted], dtype=torch.float32)
    return {"input_ids": ids, "attention_mask": mask, "position_ids": pos, "owner": owner, "labels": labels,
            "coef": coef, "behaviour": behaviour, "tokens": int(sum(r.width(fitted) for r in rows)), "rows": n_rows}
