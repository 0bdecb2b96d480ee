"""Serving demand for the local backend, read from a running gateway's Prometheus /metrics.

Requests on an engine plus requests queued, divided by what one replica admits at once, is the number of
replicas the load would keep fully busy; times cores per replica, it is demand in cores (the policy's unit).
"""

from __future__ import annotations

import httpx
from prometheus_client.parser import text_string_to_metric_families

from blacksoil.errors import ConfigError, RetryableError

RUNNING = "blacksoil:num_requests_running"
WAITING = "blacksoil:num_requests_waiting"


class GatewayDemand:
    """A callable for LocalBackend(demand=...): each call scrapes /metrics once."""

    def __init__(self, url: str, *, admitted_per_replica: int, cores_per_replica: int = 1, timeout_s: float = 10.0):
        if admitted_per_replica < 1 or cores_per_replica < 1:
            raise ConfigError(f"admitted_per_replica={admitted_per_replica} and cores_per_replica={cores_per_replica} "
                              "must be at least 1; pass serving.admitted() and serving.engine_threads()")
        self.url = url.rstrip("/") + "/metrics"
        self.admitted_per_replica = admitted_per_replica
        self.cores_per_replica = cores_per_replica
        self.timeout_s = timeout_s
        self.last: tuple[float, float] = (0.0, 0.0)
        """(running, waiting) of the latest scrape."""

    def __call__(self) -> float:
        running, waiting = self.scrape()
        return (running + waiting) / self.admitted_per_replica * self.cores_per_replica

    def scrape(self) -> tuple[float, float]:
        """(requests running, requests waiting) now."""
        try:
            resp = httpx.get(self.url, timeout=self.timeout_s)
            resp.raise_for_status()
        except httpx.HTTPError as e:
            raise RetryableError(f"cannot read gateway metrics at {self.url} ({e}); is the gateway running?") from None
        values = {WAITING: None, RUNNING: None} | {
            s.name: s.value for fam in text_string_to_metric_families(resp.text) for s in fam.samples
            if s.name in (RUNNING, WAITING)
        }
        missing = [k for k, v in values.items() if v is None]
        if missing:
            raise ConfigError(f"{self.url} lacks {missing}; point the demand signal at a blacksoil gateway")
        self.last = (float(values[RUNNING] or 0.0), float(values[WAITING] or 0.0))
        return self.last
