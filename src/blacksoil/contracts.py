"""The small typed interfaces the pillars meet through.

The gateway emits ExperienceEvents to an ExperienceSink; the learner writes AdapterVersions that
the gateway loads; the scheduler drives anything that implements Workload.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol, runtime_checkable

EventKind = Literal["model_call", "tool_step"]


@dataclass
class ExperienceEvent:
    """One model call or one tool step, as captured at the gateway or the agent runtime."""

    kind: EventKind
    """What happened: a model call through the gateway or a tool step in the agent runtime."""
    tenant: str = "default"
    """Tenant that owns the event; every store query is scoped by it."""
    session_id: str | None = None
    """Agent session / program id (X-Session-Id or the `user` field)."""
    request_id: str | None = None
    """Gateway request id (model calls) or tool call id (tool steps)."""
    model: str | None = None
    """Served model name."""
    adapter_version: str | None = None
    """Adapter version that produced the response (None = base model)."""
    messages: list[dict[str, Any]] = field(default_factory=list)
    """Chat messages sent to the model (model calls)."""
    tools: list[dict[str, Any]] | None = None
    """Tool specs offered to the model (model calls)."""
    response: dict[str, Any] = field(default_factory=dict)
    """The assistant message returned (content and/or tool_calls), or the tool result."""
    prompt_token_ids: list[int] | None = None
    """Prompt token ids when the engine returns them."""
    completion_token_ids: list[int] | None = None
    """Completion token ids when the engine returns them."""
    completion_logprobs: list[float] | None = None
    """Log-probability of each completion token when the engine returns them."""
    timings: dict[str, float] = field(default_factory=dict)
    """Seconds: queue_s, ttft_s, e2e_s (model calls) or run_s (tool steps)."""
    usage: dict[str, int] = field(default_factory=dict)
    """prompt_tokens and completion_tokens."""
    tool_name: str | None = None
    """Tool called (tool steps)."""
    tool_arguments: dict[str, Any] | None = None
    """Arguments of the tool call (tool steps)."""
    policy_verdict: str | None = None
    """allow / deny / approval_required / approved / denied_by_human (tool steps)."""
    error: str | None = None
    """Error text when the call or step failed."""
    metadata: dict[str, Any] = field(default_factory=dict)
    """Free-form: task_id, split, agent name, step index, reward hints."""
    event_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    """Unique id; stores use it to make writes idempotent."""
    created_at: float = field(default_factory=time.time)
    """Unix time (s) the event was created."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ExperienceEvent:
        return cls(**d)


@runtime_checkable
class ExperienceSink(Protocol):
    """Where captured events go (JSONL file, the experience store, a test list)."""

    def emit(self, event: ExperienceEvent) -> None:
        """Accept one event; once this returns the event must survive a crash."""

    def close(self) -> None:
        """Flush and release resources."""


AdapterStatus = Literal["candidate", "promoted", "rejected", "rolled_back"]


@dataclass(frozen=True)
class AdapterVersion:
    """An immutable, published LoRA adapter of a base model."""

    version: str
    """Version name, e.g. `v3`; unique per base model."""
    base_model: str
    """Name of the base model in the model registry."""
    gguf_path: Path | None = None
    """GGUF LoRA file for llama.cpp engines."""
    safetensors_dir: Path | None = None
    """peft adapter folder (safetensors) for vLLM upstreams."""
    parent: str | None = None
    """Version it was trained from (None = the base model)."""
    created_at: float = field(default_factory=time.time)
    """Unix time (s) of publication."""
    scale: float = 1.0
    """LoRA scale applied when serving."""
    metrics: dict[str, float] = field(default_factory=dict)
    """Eval-gate numbers (completion per suite/split)."""
    status: AdapterStatus = "candidate"
    """Lifecycle state: candidate, promoted, rejected or rolled_back."""


@dataclass(frozen=True)
class Allocation:
    """Resources the scheduler grants a workload."""

    cores: tuple[int, ...] = ()
    """CPU core ids (local backend pins threads to them)."""
    accelerators: tuple[str, ...] = ()
    """Accelerator ids (e.g. `node3/gpu5`)."""
    node: str | None = None
    """Node name when the allocation is on one node."""


WorkloadKind = Literal["serving", "learning", "agent_group"]


@runtime_checkable
class Workload(Protocol):
    """Anything the unified scheduler can start, stop (with checkpoint) and resize."""

    name: str
    kind: WorkloadKind

    def start(self, allocation: Allocation) -> None:
        """Start on the given resources."""

    def stop(self, checkpoint: bool = True) -> None:
        """Stop; checkpoint first when asked so no accepted work is lost."""

    def resize(self, allocation: Allocation) -> None:
        """Move to a new allocation (grow or shrink)."""
