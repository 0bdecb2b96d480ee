"""DDP comm-hook factories a learning gang can select by name (`LearnerSpec.comm_hook`, `[learning] comm_hook`).

Each is `factory(process_group) -> (state, hook)`, the shape `learning.trainer.load_comm_hook` imports. `fp16`
lives in learning/ddp.py; these two wrap torch's PowerSGD and blacksoil's own priority-sampling hook (compression/).
Torch is imported inside the functions, so naming a hook costs nothing until a rank registers it.
"""

from __future__ import annotations

from typing import Any


def powersgd(process_group: Any) -> tuple[Any, Any]:
    """torch's PowerSGD (rank-1 approximation with error feedback, exact for the first two steps)."""
    from torch.distributed.algorithms.ddp_comm_hooks import powerSGD_hook as ps

    state = ps.PowerSGDState(process_group=process_group, matrix_approximation_rank=1, start_powerSGD_iter=2)
    return state, ps.powerSGD_hook


def priority_sampling(process_group: Any) -> tuple[Any, Any]:
    """blacksoil's adaptive priority-sampling compression (compression/hook.py) with its default settings."""
    from blacksoil.compression.config import CompressionConfig
    from blacksoil.compression.hook import PrioritySamplingState, priority_sampling_hook

    return PrioritySamplingState(CompressionConfig(), process_group=process_group), priority_sampling_hook
