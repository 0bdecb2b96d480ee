"""Prometheus metrics of the gateway, named like vLLM's and labelled by model and adapter version.

One registry per gateway app so several gateways (tests, blue/green) never collide.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

_LABELS = ("model_name", "adapter_version")
_LAT = (0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0, 40.0, 80.0)
_ITL = (0.001, 0.005, 0.01, 0.015, 0.02, 0.025, 0.03, 0.04, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 1.0, 2.5)
_PREFIX = "blacksoil:"


class GatewayMetrics:
    """The counters and histograms /metrics exposes."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.ttft = Histogram(_PREFIX + "time_to_first_token_seconds", "Time to first token (s).", _LABELS,
                              buckets=_LAT, registry=r)
        self.itl = Histogram(_PREFIX + "inter_token_latency_seconds", "Time between streamed tokens (s).", _LABELS,
                             buckets=_ITL, registry=r)
        self.e2e = Histogram(_PREFIX + "e2e_request_latency_seconds", "End-to-end request latency (s).", _LABELS,
                             buckets=_LAT, registry=r)
        self.queue = Histogram(_PREFIX + "request_queue_time_seconds", "Time waiting for an engine slot (s).",
                               _LABELS, buckets=_LAT, registry=r)
        self.prompt_tokens = Counter(_PREFIX + "prompt_tokens", "Prompt tokens processed.", _LABELS, registry=r)
        self.generation_tokens = Counter(_PREFIX + "generation_tokens", "Generated tokens.", _LABELS, registry=r)
        self.prefix_hits = Counter(_PREFIX + "prefix_cache_hits", "Prompt tokens served from the prefix cache.",
                                   _LABELS, registry=r)
        self.requests = Counter(_PREFIX + "request_success", "Finished requests by finish reason.",
                                (*_LABELS, "finished_reason"), registry=r)
        self.errors = Counter(_PREFIX + "request_errors", "Failed requests by HTTP status.", ("status",), registry=r)
        self.running = Gauge(_PREFIX + "num_requests_running", "Requests on an engine now.", registry=r)
        self.waiting = Gauge(_PREFIX + "num_requests_waiting", "Requests in the gateway queue.", registry=r)
        # Per tenant (serving/tenancy.py caps the distinct tenant labels, so X-Tenant cannot blow them up).
        self.tenant_requests = Counter(_PREFIX + "tenant_requests", "Requests past the tenant's limits.",
                                       ("tenant",), registry=r)
        self.tenant_limited = Counter(_PREFIX + "tenant_requests_limited", "Requests refused (429) by a tenant "
                                      "limit, by the limit's name.", ("tenant", "limit"), registry=r)
        self.tenant_tokens = Counter(_PREFIX + "tenant_tokens", "Prompt + completion tokens of finished requests.",
                                     ("tenant",), registry=r)
        self.tenant_running = Gauge(_PREFIX + "tenant_requests_in_flight", "Requests past the tenant's gate "
                                    "(queued for a slot or on an engine).", ("tenant",), registry=r)
        self.tenant_waiting = Gauge(_PREFIX + "tenant_requests_waiting", "Requests in the tenant's own line.",
                                    ("tenant",), registry=r)
        self.tenant_ttft = Histogram(_PREFIX + "tenant_time_to_first_token_seconds", "Time to first token by "
                                     "tenant (s).", ("tenant",), buckets=_LAT, registry=r)
        self.replicas = Gauge(_PREFIX + "replica_info", "1 per replica, labelled by its adapter version.",
                              ("replica", *_LABELS, "status"), registry=r)

    def render(self) -> bytes:
        """The Prometheus text exposition."""
        return generate_latest(self.registry)
