"""The small typed interfaces the pillars meet through.

The gateway emits ExperienceEvents to an ExperienceSink; the learner writes AdapterVersions that
the gateway loads; the scheduler drives anything that implements Workload.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol, runtime_checkable

__all__ = ["AdapterStatus", "AdapterVersion", "Allocation", "EventKind", "ExperienceEvent", "ExperienceSink",
           "NamedReplica", "ReplicaControl", "ReplicaView", "RunningGateway", "SessionRouting", "Workload",
           "WorkloadKind"]

EventKind = Literal["model_call", "tool_step"]

TENANT_ID_MAX = 128
"""Longest tenant id (characters) the platform accepts anywhere: header, store, API."""


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


# -- the running gateway, as the learner, the swapper and the console see it ------------------------------------------
# serving.launch.GatewayHandle satisfies these structurally; pillars above serving type against them instead of `Any`.


class ReplicaView(Protocol):
    """One engine replica behind the gateway (serving.pool.ReplicaInfo)."""

    @property
    def name(self) -> str: ...

    @property
    def status(self) -> str:
        """starting, ready, draining, restarting or stopped."""
        ...

    @property
    def adapter_version(self) -> str:
        """The adapter version it serves ('base' = none)."""
        ...


class NamedReplica(Protocol):
    """A replica just started (serving.pool.Replica)."""

    @property
    def name(self) -> str: ...


class SessionRouting(Protocol):
    """Request admission's switch for where new sessions may go."""

    def set_accepting(self, name: str, accepting: bool) -> None: ...


class ReplicaControl(Protocol):
    """What a hot swap, a scoring gateway and the console do with the replica pool (serving.pool.ReplicaPool)."""

    @property
    def served_name(self) -> str:
        """The model name clients send."""
        ...

    @property
    def admission(self) -> SessionRouting:
        """Request admission: which replica takes new sessions."""
        ...

    def info(self) -> Sequence[ReplicaView]: ...

    def start_replica(self, adapter: AdapterVersion | None = None, *,
                      accept_new_sessions: bool = True) -> NamedReplica: ...

    def route_new_sessions_to(self, name: str) -> None: ...

    def drain(self, name: str, timeout_s: float = 300.0) -> None: ...

    def stop_replica(self, name: str) -> None: ...


class RunningGateway(Protocol):
    """A running OpenAI-compatible gateway (serving.launch.GatewayHandle): where to reach it, its replicas, its sink."""

    @property
    def url(self) -> str:
        """http://host:port"""
        ...

    @property
    def model(self) -> str:
        """The served model name."""
        ...

    @property
    def openai_base_url(self) -> str:
        """url + "/v1", for OpenAI SDK clients."""
        ...

    @property
    def pool(self) -> ReplicaControl: ...

    @property
    def sink(self) -> ExperienceSink | None:
        """Where the gateway sends its ExperienceEvents."""
        ...
