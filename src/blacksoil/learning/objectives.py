"""Training objectives over a collated batch: one coefficient-weighted log-likelihood covers both.

SFT (rejection sampling): coefficient = importance weight. GRPO-style: coefficient = weight × group advantage.
"""

from __future__ import annotations

from typing import Any

# Once a failed attempt's mean token NLL is this high it is unlikely enough: pushing further only
# destroys the model (unlikelihood has no floor), so negative-advantage samples stop there.
NEG_NLL_CAP = 8.0


def sequence_nll(model: Any, batch: dict[str, Any]) -> Any:
    """Mean negative log-likelihood of each sample's completion tokens (prompt tokens masked), shape [B].

    Takes a plain batch (`samples.collate`) or a prefix-shared packed one (`packing.collate_packed`).
    """
    if "owner" in batch:
        return _packed_nll(model, batch)
    import torch.nn.functional as F

    out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
    logits = out.logits[:, :-1, :].float()
    targets = batch["input_ids"][:, 1:]
    mask = batch["loss_mask"][:, 1:]
    tok_nll = F.cross_entropy(logits.reshape(-1, logits.size(-1)), targets.reshape(-1), reduction="none")
    tok_nll = tok_nll.view(targets.shape) * mask
    return tok_nll.sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)


def _packed_nll(model: Any, batch: dict[str, Any]) -> Any:
    import torch
    import torch.nn.functional as F

    owner = batch["owner"]
    # Logits only where something is learned: the vocabulary projection of every prompt token is ~15 % of the
    # step's compute and thrown away.
    keep = torch.nonzero((owner >= 0).any(dim=0)).squeeze(1)
    out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                position_ids=batch["position_ids"], logits_to_keep=keep)
    logits = out.logits.float()  # [rows, len(keep), vocab]
    own = owner[:, keep]
    tok_nll = F.cross_entropy(logits.reshape(-1, logits.size(-1)), batch["labels"][:, keep].reshape(-1),
                              reduction="none")
    sel = own.reshape(-1) >= 0
    n = batch["coef"].numel()
    total = torch.zeros(n, dtype=tok_nll.dtype).index_add(0, own.reshape(-1)[sel], tok_nll[sel])
    count = torch.zeros(n, dtype=tok_nll.dtype).index_add(0, own.reshape(-1)[sel], torch.ones_like(tok_nll[sel]))
    return total / count.clamp(min=1.0)


def weighted_loss(model: Any, batch: dict[str, Any]) -> tuple[Any, dict[str, float]]:
    """mean_i(coef_i × nll_i), with the NLL of negative-coefficient samples capped at NEG_NLL_CAP."""
    import torch

    nll = sequence_nll(model, batch)
    coef = batch["coef"]
    # Capped samples contribute no gradient (torch.where picks the constant branch).
    capped = torch.where((coef < 0) & (nll > NEG_NLL_CAP), nll.detach(), nll)
    loss = (coef * capped).mean()
    pos = coef > 0
    stats = {
        "loss": float(loss.detach()),
        "nll_pos": float(nll[pos].mean().detach()) if bool(pos.any()) else 0.0,
        "nll_neg": float(nll[~pos].mean().detach()) if bool((~pos).any()) else 0.0,
    }
    return loss, stats
