"""Settings of the serving pillar.

One frozen model, grouped under the root settings object (blacksoil.config.Settings.serving).
"""

from __future__ import annotations

import os
from typing import Literal

from pydantic import Field, field_validator, model_validator

from blacksoil.configbase import ComponentConfig


class TenantLimits(ComponentConfig):
    """Limits of one tenant (API key); None = unlimited. Enforced by serving/tenancy.py."""

    requests_per_minute: int | None = Field(default=None, ge=1)
    """Requests admitted per sliding minute (count/min); more answer 429 `tenant_requests_per_minute`."""
    tokens_per_minute: int | None = Field(default=None, ge=1)
    """Prompt + completion tokens per sliding minute (tokens/min); a tenant at or over it gets 429
    `tenant_tokens_per_minute` until its usage ages out (usage is counted when a request finishes)."""
    max_concurrent: int | None = Field(default=None, ge=1)
    """Requests of the tenant past its gate at once, in the gateway queue or on an engine (count); more wait
    in the tenant's own line, where they cannot hold a slot or a place in the shared queue."""
    max_queued: int | None = Field(default=None, ge=0)
    """Requests waiting in the tenant's own line (count); more answer 429 `tenant_max_queued`
    (`tenant_max_concurrent` when it is 0)."""


class TenancyConfig(ComponentConfig):
    """Per-tenant limits: `[serving.tenancy.default]` for everyone, `[serving.tenancy.tenants.<id>]` overrides."""

    default: TenantLimits = TenantLimits()
    """Limits of every tenant without an entry in `tenants` (and the base the entries override)."""
    tenants: dict[str, TenantLimits] = Field(default_factory=dict)
    """Per-tenant overrides keyed by tenant id (the API key's tenant, or X-Tenant without keys); the fields an
    entry sets replace the default's, the others are inherited."""

    def limits_for(self, tenant: str) -> TenantLimits:
        """The effective limits of `tenant`."""
        own = self.tenants.get(tenant)
        if own is None:
            return self.default
        return self.default.model_copy(update={k: getattr(own, k) for k in own.model_fields_set})


class TracingConfig(ComponentConfig):
    """OpenTelemetry traces (GenAI semantic conventions) of the gateway and the agent runtime."""

    otlp_endpoint: str | None = None
    """OTLP/HTTP traces endpoint, e.g. http://127.0.0.1:4318/v1/traces (None = tracing off, a no-op tracer)."""
    service_name: str = "blacksoil"
    """`service.name` resource attribute of the exported spans."""
    capture_content: bool = False
    """Put prompts, answers and tool arguments into spans (off: privacy default, only sizes and ids)."""

    @field_validator("otlp_endpoint")
    @classmethod
    def _url(cls, v: str | None) -> str | None:
        if v is not None and not v.startswith(("http://", "https://")):
            raise ValueError(f"otlp_endpoint {v!r} must be an http(s) URL such as http://127.0.0.1:4318/v1/traces")
        return v


class VllmConfig(ComponentConfig):
    """The vLLM engine (`[serving] engine = "vllm"`): vLLM's OpenAI server as a child process of the gateway."""

    python: str | None = None
    """Python of the separate vLLM environment (None = `.venv-vllm/bin/python` in the working directory or the
    source checkout; create it with `make vllm-env`)."""
    dtype: Literal["float32", "bfloat16"] = "bfloat16"
    """Weights and activations dtype (`--dtype`); bfloat16 halves memory traffic on CPUs with AVX512-BF16/AMX."""
    max_model_len: int = Field(default=0, ge=0)
    """Longest prompt + completion of one request in tokens (`--max-model-len`; 0 = ctx / slots, as llama.cpp)."""
    kv_cache_gib: int = Field(default=1, ge=1)
    """KV cache of the CPU backend in whole GiB (VLLM_CPU_KVCACHE_SPACE); shared by all running requests."""
    max_lora_rank: int = Field(default=16, ge=1)
    """Largest LoRA rank a runtime-loaded adapter may have (`--max-lora-rank`; the learner's lora_rank)."""
    max_loras: int = Field(default=2, ge=1)
    """Adapters active in one batch (`--max-loras`): 2 lets old and new serve side by side during a swap."""
    prefix_caching: bool = True
    """Reuse the KV cache of shared prompt prefixes (`--enable-prefix-caching`); session affinity feeds it."""
    start_timeout_s: float = Field(default=300.0, gt=0.0)
    """Longest vLLM may take to import, load the model and answer /health (s; 45-75 s on 2 shared cores)."""
    extra_args: tuple[str, ...] = ()
    """More command-line options for vLLM's OpenAI server, passed as they are (e.g. ["--enforce-eager"])."""


PREFILL_CHUNK_DEFAULT = 2048
"""llama.cpp's own n_batch: the engine's prefill chunk when nothing sets one (tokens)."""
MIN_PREFILL_CHUNK = 16
"""Smallest prefill chunk an engine takes (tokens)."""


class ServingConfig(ComponentConfig):
    """Gateway, embedded engine and agent-aware scheduling settings."""

    host: str = "127.0.0.1"
    """Address the gateway listens on (`blacksoil serve --host`)."""
    port: int = 8000
    """TCP port of the gateway (`blacksoil serve --port`)."""
    model: str | None = None
    """Registered model name to serve (None = the registry's default)."""
    replicas: int = 1
    """Number of embedded engine replicas (child processes)."""
    threads: int = 0
    """CPU threads per engine replica (0 = half the cores, at least 1: llama.cpp's spinning threads must not
    oversubscribe cores shared with the learner or other replicas)."""
    slots: int = 8
    """KV-cache slots per replica: sessions pinned to a slot keep their prefix cached (count)."""
    concurrency: int = 0
    """Requests admitted at once per replica (count, ≤ slots; 0 = one per slot, llama.cpp batches them)."""
    ctx: int = 16384
    """Context window per replica in tokens, shared by its slots (each slot gets ctx / slots)."""
    prefill_chunk: int = Field(default=PREFILL_CHUNK_DEFAULT, ge=MIN_PREFILL_CHUNK)
    """Most tokens one engine step processes, decoded tokens of running streams included (llama.cpp n_batch; 2048 is
    llama.cpp's own): a longer prompt is prefilled in chunks of this size between the other streams' tokens, so it
    delays them by one chunk, not the whole prompt. Smaller bounds inter-token latency tighter and prefills long
    prompts slower (one engine thread: 256 → 2.0 s gaps, 32 → 0.4 s, 45% slower prefill; tokens)."""
    queue_max: int = 64
    """Waiting requests the gateway holds before answering 429 (count)."""
    queue_timeout_s: float = 120.0
    """Longest a request waits in the queue before a 503 (seconds)."""
    default_max_tokens: int = 256
    """Tokens generated when a request sets no max_tokens (count)."""
    max_tokens_cap: int = Field(default=4096, ge=1)
    """Largest max_tokens a request may ask for (count); embedded engines also cap it at ctx / slots."""
    health_interval_s: float = Field(default=5.0, gt=0.0)
    """Seconds between health probes of each embedded engine (s): a small real request with a timeout."""
    health_timeout_s: float = Field(default=5.0, gt=0.0)
    """Longest a health probe may take before it counts as failed (s)."""
    health_failures: int = Field(default=2, ge=1)
    """Consecutive failed probes after which a hung engine is killed and restarted (count)."""
    engine_start_timeout_s: float = 60.0
    """Longest an engine replica may take to load its model (seconds)."""
    request_timeout_s: float = 600.0
    """Longest a single engine call may take (seconds)."""
    policy: str = "agent"
    """Scheduling policy: `agent` (priority, then arrival; a session stays on the replica and slot holding its
    prefix, a new one goes to the replica holding its system prompt), `round_robin` (each request to the next replica
    in turn, as a plain load balancer) or `fcfs` (arrival order, least-loaded replica, the engine picks the slot).
    See serving/admission.py for what was measured."""
    prefix_load_factor: float = Field(default=1.25, ge=1.0)
    """Agent policy: a new session leaves the replica holding its prompt prefix for the next one in hash order only
    when that replica is full and its demand (running + waiting requests that want it) is over this × the mean
    (ratio; bounded-load consistent hashing). Higher keeps prefixes together longer, 1.0 balances load first."""
    upstreams: tuple[str, ...] = ()
    """OpenAI-compatible upstream base URLs (e.g. http://host:8000/v1); when set, no embedded engine starts."""
    upstream_api_key: str | None = None
    """Bearer key sent to the upstream engines (vLLM/SGLang `--api-key`); None = no key."""
    admin_key: str | None = Field(default=None, min_length=16)
    """Bearer key of the gateway's replica API (/v1/replicas: engines others run join and leave the pool, e.g. the
    Kubernetes operator's serving pods); None = that API is off. At least 16 random characters."""
    capture_tokens: bool = True
    """Ask the engine for completion token ids and logprobs so experience events carry them."""
    engine: Literal["llamacpp", "vllm"] = "llamacpp"
    """Engine: embedded llama.cpp, or vLLM from .venv-vllm (`make vllm-env`); with one `upstreams` URL, that vLLM."""
    vllm: VllmConfig = VllmConfig()
    """Settings of the vLLM engine (`[serving.vllm]`), used when engine = "vllm"."""
    experience_file: str = "experience/gateway.jsonl"
    """JSONL file of experience events, relative to BLACKSOIL_HOME (or absolute)."""
    tenancy: TenancyConfig = TenancyConfig()
    """Per-tenant rate limits, token quotas and concurrency caps (`[serving.tenancy]`)."""
    tracing: TracingConfig = TracingConfig()
    """OpenTelemetry traces (`[serving.tracing]`): off unless an OTLP endpoint is set."""

    def engine_threads(self) -> int:
        """Threads per replica after resolving 0 = auto."""
        return self.threads or max(1, (os.cpu_count() or 2) // 2)

    @field_validator("threads", "concurrency")
    @classmethod
    def _threads(cls, v: int) -> int:
        if v < 0:
            raise ValueError(f"must be ≥ 0 (0 = automatic), got {v}")
        return v

    def admitted(self) -> int:
        """Requests admitted at once per replica after resolving 0 = slots."""
        return self.concurrency or self.slots

    @field_validator("replicas", "slots", "queue_max", "default_max_tokens")
    @classmethod
    def _positive(cls, v: int) -> int:
        if v < 1:
            raise ValueError(f"must be ≥ 1, got {v}")
        return v

    @field_validator("policy")
    @classmethod
    def _policy(cls, v: str) -> str:
        if v not in ("agent", "fcfs", "round_robin"):
            raise ValueError(f"policy {v!r} is unknown; use 'agent', 'round_robin' or 'fcfs'")
        return v

    @model_validator(mode="after")
    def _fits(self) -> ServingConfig:
        if self.concurrency > self.slots:
            raise ValueError(f"concurrency {self.concurrency} exceeds slots {self.slots}; lower it or add slots")
        if self.ctx < 256 * self.slots:
            raise ValueError(f"ctx {self.ctx} leaves under 256 tokens per slot for {self.slots} slots; raise ctx")
        return self
