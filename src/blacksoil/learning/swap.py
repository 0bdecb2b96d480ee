"""Zero-downtime hot swap of the served adapter: blue/green over the gateway's replica pool, optional canary,
automatic rollback, and a check that the new version really serves (the verl#7495 pitfall: a silent no-op sync).

Steps: start green with the adapter (warm, not yet routed) → optional canary (green takes new sessions beside blue
and must serve `canary_requests` without errors or a dead engine) → route all new sessions to green → drain and stop
blue → probe through the gateway until /metrics shows a request served by the new version.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import httpx
from prometheus_client.parser import text_string_to_metric_families

from blacksoil.contracts import AdapterVersion, RunningGateway
from blacksoil.errors import InternalError, NotFoundError, RetryableError

_SUCCESS = "blacksoil:request_success"
_ERRORS = "blacksoil:request_errors"


@dataclass
class SwapReport:
    """What one swap did."""

    from_versions: list[str]
    """Adapter versions served before ('base' = no adapter)."""
    to_version: str
    """Version that should serve afterwards."""
    ok: bool = False
    """True when the new version serves and the old replicas are gone."""
    rolled_back: bool = False
    """True when the canary regressed and blue kept serving."""
    reason: str = ""
    """Why it rolled back or failed (empty on success)."""
    seconds: float = 0.0
    """Whole swap, start of green to old replicas stopped (s)."""
    visible_s: float = 0.0
    """From the start of the swap until the gateway answered with the new version (s)."""
    canary: dict[str, float] = field(default_factory=dict)
    """Canary numbers: requests served by green, errors seen meanwhile."""


def served_counts(gateway_url: str) -> tuple[dict[str, float], float]:
    """(finished requests per adapter version, failed requests) from the gateway's /metrics."""
    text = httpx.get(gateway_url + "/metrics", timeout=10).text
    per_version: dict[str, float] = {}
    errors = 0.0
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            if s.name == _SUCCESS + "_total":
                v = s.labels.get("adapter_version", "base")
                per_version[v] = per_version.get(v, 0.0) + s.value
            elif s.name == _ERRORS + "_total":
                errors += s.value
    return per_version, errors


class HotSwapper:
    """Blue/green swaps on a running gateway (`launch.GatewayHandle`: url, model, pool).

    `api_key` authenticates the swap's probes like the agents (agents.api_key): with platform API keys an
    anonymous probe would get 401.
    """

    def __init__(self, gw: RunningGateway, *, api_key: str = "none", canary: bool = False, canary_requests: int = 8,
                 max_error_rate: float = 0.0, canary_timeout_s: float = 120.0,
                 verify_timeout_s: float = 60.0) -> None:
        self.gw, self.pool, self.api_key = gw, gw.pool, api_key
        self.canary, self.canary_requests, self.max_error_rate = canary, canary_requests, max_error_rate
        self.canary_timeout_s, self.verify_timeout_s = canary_timeout_s, verify_timeout_s

    def served_versions(self) -> set[str]:
        """Versions of the replicas that are up (ready or draining)."""
        return {i.adapter_version for i in self.pool.info() if i.status in ("ready", "draining", "restarting")}

    def swap(self, adapter: AdapterVersion | None) -> SwapReport:
        """Replace every serving replica by one serving `adapter` (None = the base model)."""
        t0 = time.monotonic()
        target = adapter.version if adapter else "base"
        blue = [i.name for i in self.pool.info() if i.status in ("ready", "restarting")]
        report = SwapReport(sorted({i.adapter_version for i in self.pool.info()}), target)
        green = self.pool.start_replica(adapter, accept_new_sessions=False)  # returns once loaded and answering
        if self.canary:
            ok, report.reason, report.canary = self._run_canary(green.name, target)
            if not ok:
                self._rollback(green.name, blue)
                report.rolled_back, report.seconds = True, time.monotonic() - t0
                return report
        self.pool.route_new_sessions_to(green.name)
        report.visible_s = self._verify(target, t0)
        for name in blue:
            self._retire(name)
        if self.served_versions() != {target}:
            raise InternalError(f"after the swap the pool serves {sorted(self.served_versions())}, not {target!r}")
        report.ok, report.seconds = True, time.monotonic() - t0
        return report

    def _retire(self, name: str) -> None:
        """Drain and stop a blue replica, unless someone else (the scheduler scaling serving down) already did."""
        try:
            self.pool.drain(name)
            self.pool.stop_replica(name)
        except NotFoundError:
            return

    def _rollback(self, green: str, blue: list[str]) -> None:
        """Blue takes every new session again; green drains (its in-flight requests finish) and stops."""
        if blue:
            self.pool.route_new_sessions_to(blue[0])
            for name in blue[1:]:
                self.pool.admission.set_accepting(name, True)
        self.pool.drain(green)
        self.pool.stop_replica(green)

    def _run_canary(self, green: str, target: str) -> tuple[bool, str, dict[str, float]]:
        """Green takes new sessions beside blue until it has served `canary_requests` (or time runs out)."""
        before, errors_before = served_counts(self.gw.url)
        self.pool.admission.set_accepting(green, True)
        deadline = time.monotonic() + self.canary_timeout_s
        served = 0.0
        while time.monotonic() < deadline:
            counts, errors = served_counts(self.gw.url)
            served = counts.get(target, 0.0) - before.get(target, 0.0)
            if served >= self.canary_requests or not self._green_alive(green):
                break
            # Probes keep the canary honest when organic traffic is thin.
            self._probe()
            time.sleep(0.1)
        counts, errors = served_counts(self.gw.url)
        served = counts.get(target, 0.0) - before.get(target, 0.0)
        new_errors = errors - errors_before
        numbers = {"served": served, "errors": new_errors}
        if not self._green_alive(green):
            return False, f"canary {target} engine died during the canary", numbers
        if served < self.canary_requests:
            return False, f"canary {target} served {served:.0f} of {self.canary_requests} requests in time", numbers
        rate = new_errors / max(1.0, served)
        if rate > self.max_error_rate:
            return False, f"canary {target} error rate {rate:.2f} > {self.max_error_rate:.2f}", numbers
        return True, "", numbers

    def _green_alive(self, name: str) -> bool:
        for r in self.pool.info():
            if r.name == name:
                return r.status == "ready"
        return False

    def _probe(self) -> None:
        """One tiny request through the gateway (a new session, so it follows the routing of new sessions)."""
        body = {"model": self.gw.model, "messages": [{"role": "user", "content": "ping"}], "max_tokens": 1,
                "user": f"swap-probe-{time.monotonic_ns()}"}
        headers = {"Authorization": f"Bearer {self.api_key}"}
        try:
            httpx.post(self.gw.url + "/v1/chat/completions", json=body, headers=headers, timeout=60).raise_for_status()
        except httpx.HTTPError as e:
            raise RetryableError(f"swap probe through {self.gw.url} failed ({e}); is the gateway up?") from None

    def _verify(self, target: str, t0: float) -> float:
        """Probe until /metrics counts a request served by `target`; seconds since t0 when it did."""
        before = served_counts(self.gw.url)[0].get(target, 0.0)
        deadline = time.monotonic() + self.verify_timeout_s
        while time.monotonic() < deadline:
            self._probe()
            if served_counts(self.gw.url)[0].get(target, 0.0) > before:
                return time.monotonic() - t0
        raise InternalError(f"version {target!r} never served a request within {self.verify_timeout_s:.0f} s after "
                            "the swap (the sync did not reach serving); check the gateway's replicas at /health")
