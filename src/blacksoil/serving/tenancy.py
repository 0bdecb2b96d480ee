"""Per-tenant limits at the gateway: requests and tokens per minute, requests in flight, a bounded own line.

The tenant is the platform API key's tenant (`request.state.tenant`), else the X-Tenant header, else `default`
(serving/app.py). Every request passes `TenantGate.enter` before it may join the shared admission queue and
`leave`s when it ends, so one tenant can hold at most `max_concurrent` places in that queue and on the engines.

Protected (tests/serving/test_tenancy.py): a tenant over `requests_per_minute` or `tokens_per_minute`, or whose
own line is full, gets a 429 with Retry-After whose code names the limit (tenant_requests_per_minute,
tenant_tokens_per_minute, tenant_max_queued, tenant_max_concurrent); a tenant flooding past `max_concurrent`
waits in its own line and cannot take another tenant's slots (test_tenancy_isolation.py: the other tenant's
TTFT p99 rises ≤ 20 %); the per-tenant metric labels are capped (`LABELS_MAX`), so made-up X-Tenant values
cannot grow /metrics without bound.
Not protected: without the platform's API keys the X-Tenant header is trusted, so a client can spread its load
over made-up tenants (configure API keys to stop that); limits are per gateway process, not shared across
gateways; `tokens_per_minute` counts a request's tokens when it finishes, so the request that crosses the
quota still completes (the next one is refused); prompt tokens are not estimated up front.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from blacksoil.errors import Overloaded, RetryableError
from blacksoil.serving.config import TenancyConfig, TenantLimits
from blacksoil.serving.metrics import GatewayMetrics

WINDOW_S = 60.0
"""Length of the sliding window of the per-minute limits (s)."""
LABELS_MAX = 64
"""Distinct tenants labelled in /metrics beyond the configured ones; later ones share the label `other`."""
_STATES_MAX = 10_000  # idle tenants are forgotten beyond this many


class TenantLimited(Overloaded):
    """A tenant limit refused the request: 429, Retry-After, `code` names the limit."""


@dataclass
class _Tenant:
    name: str
    limits: TenantLimits
    label: str
    arrivals: deque[float] = field(default_factory=deque)
    spent: deque[tuple[float, int]] = field(default_factory=deque)
    in_flight: int = 0
    line: deque[asyncio.Future[None]] = field(default_factory=deque)

    def idle(self) -> bool:
        return not (self.arrivals or self.spent or self.in_flight or self.line)


class TenantGate:
    """Admits, queues or refuses each tenant's requests; all calls run on the gateway's event loop."""

    def __init__(self, config: TenancyConfig, metrics: GatewayMetrics | None = None,
                 clock: Callable[[], float] = time.monotonic, line_timeout_s: float = 120.0) -> None:
        """`line_timeout_s`: longest a request waits in its tenant's line before a 503 (the gateway passes
        serving.queue_timeout_s)."""
        self.config = config
        self.line_timeout_s = line_timeout_s
        self.metrics = metrics
        self.clock = clock
        self._tenants: dict[str, _Tenant] = {}
        self._labels: set[str] = set()

    # -- the request path --
    async def enter(self, tenant: str) -> None:
        """Pass the tenant's limits (maybe after waiting in its line) or raise TenantLimited."""
        t = self._state(tenant)
        now = self.clock()
        self._expire(t, now)
        lim = t.limits
        if lim.requests_per_minute is not None and len(t.arrivals) >= lim.requests_per_minute:
            self._refuse(t, tenant, "requests_per_minute", f"{len(t.arrivals)} requests in the last minute",
                         lim.requests_per_minute, t.arrivals[0] + WINDOW_S - now)
        used = sum(n for _, n in t.spent)
        if lim.tokens_per_minute is not None and used >= lim.tokens_per_minute:
            self._refuse(t, tenant, "tokens_per_minute", f"{used} tokens in the last minute", lim.tokens_per_minute,
                         self._tokens_free_in(t, now, lim.tokens_per_minute))
        if lim.max_concurrent is not None and t.in_flight >= lim.max_concurrent:
            if lim.max_queued is not None and len(t.line) >= lim.max_queued:
                name, limit = ("max_queued", lim.max_queued) if lim.max_queued else ("max_concurrent",
                                                                                       lim.max_concurrent)
                self._refuse(t, tenant, name, f"{t.in_flight} requests in flight and {len(t.line)} waiting",
                             limit, 1.0)
            t.arrivals.append(now)
            await self._wait_in_line(t)
        else:
            t.arrivals.append(now)
            t.in_flight += 1
        self._gauges(t)
        if self.metrics is not None:
            self.metrics.tenant_requests.labels(t.label).inc()

    def leave(self, tenant: str) -> None:
        """The request ended (answered, failed or cancelled): its place goes to the first in the tenant's line."""
        t = self._tenants.get(tenant)
        if t is None:
            return
        while t.line:
            fut = t.line.popleft()
            if not fut.done():
                fut.set_result(None)  # the place passes on: in_flight stays the same
                self._gauges(t)
                return
        t.in_flight = max(0, t.in_flight - 1)
        self._gauges(t)

    def charge(self, tenant: str, tokens: int) -> None:
        """Count a finished request's prompt + completion tokens against the tenant's tokens_per_minute."""
        t = self._tenants.get(tenant)
        if t is None or tokens <= 0:
            return
        t.spent.append((self.clock(), tokens))
        if self.metrics is not None:
            self.metrics.tenant_tokens.labels(t.label).inc(tokens)

    def observe_ttft(self, tenant: str, seconds: float) -> None:
        t = self._tenants.get(tenant)
        if self.metrics is not None and t is not None:
            self.metrics.tenant_ttft.labels(t.label).observe(seconds)

    def in_flight(self, tenant: str) -> int:
        t = self._tenants.get(tenant)
        return t.in_flight if t else 0

    def waiting(self, tenant: str) -> int:
        t = self._tenants.get(tenant)
        return len(t.line) if t else 0

    # -- internals --
    async def _wait_in_line(self, t: _Tenant) -> None:
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        t.line.append(fut)
        self._gauges(t)
        try:
            await asyncio.wait_for(asyncio.shield(fut), self.line_timeout_s)
        except TimeoutError:
            if fut in t.line:
                t.line.remove(fut)
                self._gauges(t)
                raise RetryableError(f"request waited {self.line_timeout_s:.0f} s in tenant {t.name!r}'s line for "
                                     "one of its max_concurrent places; retry later", retry_after_s=5.0,
                                     code="tenant_line_timeout") from None
            # granted at the deadline: keep the place
        except asyncio.CancelledError:
            if fut in t.line:
                t.line.remove(fut)
                fut.cancel()
            elif fut.done() and not fut.cancelled():  # granted just as the client left: pass the place on
                self.leave(t.name)
            self._gauges(t)
            raise

    def _state(self, tenant: str) -> _Tenant:
        t = self._tenants.get(tenant)
        if t is None:
            if len(self._tenants) >= _STATES_MAX:
                self._tenants = {k: v for k, v in self._tenants.items() if not v.idle()}
            t = self._tenants[tenant] = _Tenant(tenant, self.config.limits_for(tenant), self._label(tenant))
        return t

    def _label(self, tenant: str) -> str:
        if tenant in self.config.tenants or tenant in self._labels:
            return tenant
        if len(self._labels) < LABELS_MAX:
            self._labels.add(tenant)
            return tenant
        return "other"

    @staticmethod
    def _expire(t: _Tenant, now: float) -> None:
        while t.arrivals and t.arrivals[0] <= now - WINDOW_S:
            t.arrivals.popleft()
        while t.spent and t.spent[0][0] <= now - WINDOW_S:
            t.spent.popleft()

    @staticmethod
    def _tokens_free_in(t: _Tenant, now: float, limit: int) -> float:
        """Seconds until the tokens in the window drop below `limit`."""
        used = sum(n for _, n in t.spent)
        for at, n in t.spent:
            used -= n
            if used < limit:
                return at + WINDOW_S - now
        return WINDOW_S

    def _refuse(self, t: _Tenant, tenant: str, name: str, seen: str, limit: int, retry_s: float) -> None:
        if self.metrics is not None:
            self.metrics.tenant_limited.labels(t.label, name).inc()
        raise TenantLimited(
            f"tenant {tenant!r} is over its {name} limit ({seen}; {name}={limit}); retry after the Retry-After "
            f"delay or raise serving.tenancy.tenants.{tenant}.{name}",
            retry_after_s=float(max(1, math.ceil(retry_s))), code=f"tenant_{name}")

    def _gauges(self, t: _Tenant) -> None:
        if self.metrics is not None:
            self.metrics.tenant_running.labels(t.label).set(t.in_flight)
            self.metrics.tenant_waiting.labels(t.label).set(len(t.line))
