"""Settings of the learning pillar.

One frozen model, grouped under the root settings object (blacksoil.config.Settings.learning).
"""

from __future__ import annotations

from typing import Literal

from pydantic import NonNegativeFloat, NonNegativeInt, PositiveFloat, PositiveInt, field_validator

from blacksoil.configbase import ComponentConfig, Fraction

__all__ = ["LearningConfig"]

_LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj")


class LearningConfig(ComponentConfig):
    """Settings of the learning pillar: LoRA trainer, eval gate, publishing and hot swap."""

    base_model_path: str | None = None
    """Path of the base model GGUF to train on (None = the shipped default model)."""
    lora_rank: PositiveInt = 16
    """LoRA rank r (dimensionless)."""
    lora_alpha: PositiveInt = 32
    """LoRA alpha; the update is scaled by alpha / rank (dimensionless)."""
    lora_targets: tuple[str, ...] = _LORA_TARGETS
    """Projection modules that get a LoRA (HF names; the GGUF export knows q/k/v/o)."""
    lora_layers: NonNegativeInt = 8
    """LoRA only on the top this many decoder layers (0 = all); fewer layers = a shorter backward pass."""
    learning_rate: PositiveFloat = 1e-3
    """AdamW learning rate (per step)."""
    train_tenants: tuple[str, ...] = ()
    """Tenants whose stored experience may train this model (opt-in); the learner's own practice tenant (the one
    its agents.api_key maps to) always counts. Nobody else's data is read."""
    objective: Literal["sft", "grpo"] = "sft"
    """Training objective: rejection-sampling fine-tuning (sft) or GRPO (clipped policy gradient with group
    advantages, the engine's log-probabilities as behaviour policy and a KL penalty to the base model)."""
    clip_eps: PositiveFloat = 0.2
    """GRPO: the policy ratio is clipped to [1 - clip_eps, 1 + clip_eps] (dimensionless)."""
    kl_coef: NonNegativeFloat = 0.05
    """GRPO: weight of the KL penalty to the base model (0 = none; dimensionless)."""
    sft_kl_coef: NonNegativeFloat = 0.0
    """SFT: weight of an exact KL(policy ‖ base) over the vocabulary at every learned token, which keeps the adapter
    from forgetting what the base model did well (0 = plain SFT; dimensionless)."""
    batch_size: PositiveInt = 8
    """Samples per optimizer step (summed over DDP ranks)."""
    max_seq_len: PositiveInt = 1024
    """Longest packed row (a trajectory's last prompt + its completions), in tokens; the learner skips calls
    longer than this (a trainer given one anyway cuts its prompt from the left)."""
    steps_per_round: PositiveInt = 28
    """Optimizer steps in one learning round."""
    checkpoint_every: PositiveInt = 8
    """Save a resumable checkpoint every this many steps."""
    keep_checkpoints: PositiveInt = 2
    """How many checkpoints to keep on disk (older ones are deleted)."""
    torch_threads: PositiveInt = 1
    """torch intra-op threads of the trainer (cores are split with serving, not shared)."""
    comm_hook: Literal["none", "fp16", "powersgd", "priority"] = "none"
    """Gradient all-reduce of multi-rank gangs (Ray backend): exact, fp16, PowerSGD or priority sampling."""
    seed: int = 0
    """Seed of data order and LoRA initialisation."""
    gate_margin: Fraction = 0.0
    """Promotion needs dev completion to improve by at least this much (fraction, 0.05 = 5 points)."""
    gate_tolerance: Fraction = 0.02
    """No suite may lose more than this much completion (fraction, 0.02 = 2 points)."""
    swap_canary_fraction: Fraction = 0.0
    """Fraction of new sessions sent to the candidate before full cut-over (0 = no canary)."""
    swap_canary_requests: PositiveInt = 8
    """Requests the canary must serve before its error rate is judged (count)."""
    swap_max_error_rate: Fraction = 0.0
    """Canary error rate above which the swap rolls back (fraction)."""

    @field_validator("lora_targets")
    @classmethod
    def _targets(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        bad = [t for t in v if t not in _LORA_TARGETS]
        if bad or not v:
            raise ValueError(f"unknown LoRA targets {bad or v}; choose among {list(_LORA_TARGETS)}")
        return v
