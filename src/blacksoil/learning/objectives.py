"""Training objectives over a collated batch.

- SFT (rejection sampling, `weighted_loss`): coefficient-weighted log-likelihood, coefficient = importance weight.
- GRPO (`clipped_policy_loss`): PPO's clipped surrogate on each completion token, with the ratio of the current to
  the behaviour policy (the engine's stored log-probabilities), the group-relative advantage times the replay
  importance weight, and a KL penalty to the base model, which is the same network with the adapter switched off
  (no second copy of the weights).
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
    tok_nll, own, _ = token_nll(model, batch)
    return per_sample_mean(tok_nll, own, batch["coef"].numel())


def token_nll(model: Any, batch: dict[str, Any]) -> tuple[Any, Any, Any]:
    """NLL of every learned token of a packed batch: (nll [T], owning sample [T], flat index into [rows, width])."""
    tok_nll, own, flat, _ = token_logits(model, batch)
    return tok_nll, own, flat


def token_logits(model: Any, batch: dict[str, Any]) -> tuple[Any, Any, Any, Any]:
    """`token_nll` plus the logits of those tokens' positions ([T, vocab], float32)."""
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
    width = owner.size(1)
    flat = (torch.arange(owner.size(0)).unsqueeze(1) * width + keep.unsqueeze(0)).reshape(-1)
    return tok_nll[sel], own.reshape(-1)[sel], flat[sel], logits.reshape(-1, logits.size(-1))[sel]


def per_sample_mean(values: Any, own: Any, n: int) -> Any:
    """Mean of per-token `values` over each sample's tokens, shape [n]."""
    import torch

    total = torch.zeros(n, dtype=values.dtype).index_add(0, own, values)
    count = torch.zeros(n, dtype=values.dtype).index_add(0, own, torch.ones_like(values))
    return total / count.clamp(min=1.0)


def clipped_policy_loss(model: Any, reference: Any, batch: dict[str, Any], clip_eps: float,
                        kl_coef: float) -> tuple[Any, dict[str, float], list[float]]:
    """PPO/GRPO clipped surrogate per token, plus kl_coef × KL(policy ‖ base) (the k3 estimator); a sample's
    loss is the mean over its tokens, the batch's the mean over samples. `reference()` is a context manager in
    which `model` runs without its adapter (peft's `disable_adapter`).

    Where the behaviour log-probability is unknown (a demonstration, a re-tokenized call) the ratio is taken
    against the current policy itself (ratio 1): the step is then the plain policy gradient.
    """
    import torch

    tok_nll, own, flat = token_nll(model, batch)
    logp = -tok_nll
    behaviour = batch["behaviour"].reshape(-1)[flat]
    known = ~torch.isnan(behaviour)
    behaviour = torch.where(known, behaviour, logp.detach())
    ratio = torch.exp(logp - behaviour)
    adv = batch["coef"][own]
    surrogate = torch.minimum(ratio * adv, torch.clamp(ratio, 1 - clip_eps, 1 + clip_eps) * adv)
    kl = torch.zeros_like(logp)
    if kl_coef > 0:
        with torch.no_grad(), reference():
            ref_logp = -token_nll(model, batch)[0]
        delta = ref_logp - logp
        kl = torch.exp(delta) - delta - 1  # k3: unbiased, non-negative estimate of KL(policy ‖ base)
    n = batch["coef"].numel()
    per_sample = per_sample_mean(-surrogate + kl_coef * kl, own, n)
    loss = per_sample.mean()
    clipped = ((ratio - 1).abs() > clip_eps).float()
    stats = {"loss": float(loss.detach()), "kl": float(kl.mean().detach()),
             "clip_frac": float(clipped.mean()), "ratio_known": float(known.float().mean())}
    return loss, stats, [float(x) for x in per_sample_mean(tok_nll.detach(), own, n)]


def weighted_loss(model: Any, batch: dict[str, Any]) -> tuple[Any, dict[str, float], list[float]]:
    """mean_i(coef_i × nll_i), with the NLL of negative-coefficient samples capped at NEG_NLL_CAP; plus stats and
    each sample's NLL (replay turns them into new priorities)."""
    nll = sequence_nll(model, batch)
    loss, stats = _weighted(nll, batch["coef"])
    return loss, stats, [float(x) for x in nll.detach()]


def _weighted(nll: Any, coef: Any) -> tuple[Any, dict[str, float]]:
    """mean_i(coef_i × nll_i) with the negative samples' NLL capped, and its stats."""
    import torch

    # Capped samples contribute no gradient (torch.where picks the constant branch).
    capped = torch.where((coef < 0) & (nll > NEG_NLL_CAP), nll.detach(), nll)
    loss = (coef * capped).mean()
    pos = coef > 0
    return loss, {
        "loss": float(loss.detach()),
        "nll_pos": float(nll[pos].mean().detach()) if bool(pos.any()) else 0.0,
        "nll_neg": float(nll[~pos].mean().detach()) if bool((~pos).any()) else 0.0,
    }


def anchored_loss(model: Any, reference: Any, batch: dict[str, Any],
                  kl_coef: float) -> tuple[Any, dict[str, float], list[float]]:
    """SFT anchored to the base model: mean_i(coef_i × nll_i) + kl_coef × KL(policy ‖ base), the KL taken exactly
    over the whole vocabulary at every learned position. Demonstrations are not samples of the policy, so the
    token-level k3 estimate GRPO uses would be biased here. `reference()` runs `model` without its adapter."""
    import torch
    import torch.nn.functional as F

    tok_nll, own, _, logits = token_logits(model, batch)
    n = batch["coef"].numel()
    nll = per_sample_mean(tok_nll, own, n)
    logp = F.log_softmax(logits, dim=-1)
    with torch.no_grad(), reference():
        ref_logp = F.log_softmax(token_logits(model, batch)[3], dim=-1)
    kl = per_sample_mean((logp.exp() * (logp - ref_logp)).sum(dim=-1), own, n)
    sft, stats = _weighted(nll, batch["coef"])
    loss = sft + kl_coef * kl.mean()
    stats |= {"loss": float(loss.detach()), "kl": float(kl.mean().detach())}
    return loss, stats, [float(x) for x in nll.detach()]
