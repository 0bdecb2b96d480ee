"""Training objectives over a collated batch: one coefficient-weighted log-likelihood covers both.

SFT (rejection sampling): coefficient = importance weight. GRPO-style: coefficient = weight × group advantage.
"""

from __future__ import annotations

from typing import Any

# Once a failed attempt's mean token NLL is this high it is unlikely enough: pushing further only
# destroys the model (unlikelihood has no floor), so negative-advantage samples stop there.
NEG_NLL_CAP = 8.0


def sequence_nll(model: Any, batch: dict[str, Any]) -> Any:
    """Mean negative log-likelihood of each sample's completion tokens (prompt tokens masked), shape [B]."""
    import torch.nn.functional as F

    out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
    logits = out.logits[:, :-1, :].float()
    targets = batch["input_ids"][:, 1:]
    mask = batch["loss_mask"][:, 1:]
    tok_nll = F.cross_entropy(logits.reshape(-1, logits.size(-1)), targets.reshape(-1), reduction="none")
    tok_nll = tok_nll.view(targets.shape) * mask
    return tok_nll.sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)


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
