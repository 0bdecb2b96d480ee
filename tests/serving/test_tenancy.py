"""Per-tenant limits: each limit alone with a fake clock, the config in blacksoil.toml, and the real gateway's 429."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest
from prometheus_client import CollectorRegistry
from tests.serving.conftest import small_config

from blacksoil.config import load_settings
from blacksoil.serving.config import TenancyConfig, TenantLimits
from blacksoil.serving.launch import gateway
from blacksoil.serving.metrics import GatewayMetrics
from blacksoil.serving.tenancy import LABELS_MAX, TenantGate, TenantLimited


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def gate(clock: FakeClock | None = None, **limits: int) -> TenantGate:
    return TenantGate(TenancyConfig(default=TenantLimits(**limits)), GatewayMetrics(), clock=clock or FakeClock())


def sample(registry: CollectorRegistry, name: str, **labels: str) -> float:
    return registry.get_sample_value(name, labels) or 0.0


async def refused(g: TenantGate, tenant: str = "a") -> TenantLimited:
    with pytest.raises(TenantLimited) as e:
        await g.enter(tenant)
    return e.value


# -- requests per minute --

async def test_requests_per_minute_refuses_the_next_request_with_the_limit_name() -> None:
    g = gate(requests_per_minute=3)
    for _ in range(3):
        await g.enter("a")
        g.leave("a")
    assert (await refused(g)).code == "tenant_requests_per_minute"


async def test_requests_per_minute_retry_after_is_when_the_oldest_ages_out() -> None:
    clock = FakeClock()
    g = gate(clock, requests_per_minute=2)
    await g.enter("a")
    clock.now += 20
    await g.enter("a")
    assert (await refused(g)).retry_after_s == 40.0


async def test_requests_per_minute_admits_again_after_the_window() -> None:
    clock = FakeClock()
    g = gate(clock, requests_per_minute=1)
    await g.enter("a")
    clock.now += 60.0
    await g.enter("a")
    assert g.in_flight("a") == 2


async def test_requests_per_minute_is_per_tenant() -> None:
    g = gate(requests_per_minute=1)
    await g.enter("a")
    await g.enter("b")
    assert g.in_flight("b") == 1


# -- tokens per minute --

async def test_tokens_per_minute_refuses_once_the_quota_is_spent() -> None:
    g = gate(tokens_per_minute=100)
    await g.enter("a")
    g.charge("a", 100)
    g.leave("a")
    assert (await refused(g)).code == "tenant_tokens_per_minute"


async def test_tokens_per_minute_retry_after_is_when_usage_drops_below_the_quota() -> None:
    clock = FakeClock()
    g = gate(clock, tokens_per_minute=100)
    await g.enter("a")
    g.charge("a", 70)
    clock.now += 30
    g.charge("a", 40)
    g.leave("a")
    assert (await refused(g)).retry_after_s == 30.0


async def test_tokens_under_the_quota_pass() -> None:
    g = gate(tokens_per_minute=100)
    await g.enter("a")
    g.charge("a", 99)
    g.leave("a")
    await g.enter("a")
    assert g.in_flight("a") == 1


# -- max concurrent and max queued --

async def test_max_concurrent_makes_the_next_request_wait_in_the_tenant_line() -> None:
    g = gate(max_concurrent=1)
    await g.enter("a")
    waiter = asyncio.ensure_future(g.enter("a"))
    await asyncio.sleep(0)
    assert (g.waiting("a"), waiter.done()) == (1, False)
    g.leave("a")
    await asyncio.wait_for(waiter, 1)


async def test_a_place_passes_to_the_waiter_without_exceeding_max_concurrent() -> None:
    g = gate(max_concurrent=1)
    await g.enter("a")
    waiter = asyncio.ensure_future(g.enter("a"))
    await asyncio.sleep(0)
    g.leave("a")
    await waiter
    assert g.in_flight("a") == 1


async def test_max_concurrent_does_not_hold_back_another_tenant() -> None:
    g = gate(max_concurrent=1)
    await g.enter("a")
    await asyncio.wait_for(g.enter("b"), 1)
    assert g.in_flight("b") == 1


async def test_max_queued_refuses_when_the_tenant_line_is_full() -> None:
    g = gate(max_concurrent=1, max_queued=1)
    await g.enter("a")
    waiter = asyncio.ensure_future(g.enter("a"))
    await asyncio.sleep(0)
    err = await refused(g)
    waiter.cancel()
    assert (err.code, err.status_code) == ("tenant_max_queued", 429)


async def test_max_queued_zero_refuses_at_max_concurrent() -> None:
    g = gate(max_concurrent=2, max_queued=0)
    await g.enter("a")
    await g.enter("a")
    assert (await refused(g)).code == "tenant_max_concurrent"


async def test_a_cancelled_waiter_leaves_the_line() -> None:
    g = gate(max_concurrent=1)
    await g.enter("a")
    waiter = asyncio.ensure_future(g.enter("a"))
    await asyncio.sleep(0)
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    g.leave("a")
    assert (g.waiting("a"), g.in_flight("a")) == (0, 0)


async def test_the_line_times_out_with_a_503() -> None:
    g = TenantGate(TenancyConfig(default=TenantLimits(max_concurrent=1)), line_timeout_s=0.05)
    await g.enter("a")
    with pytest.raises(Exception) as e:
        await g.enter("a")
    assert (getattr(e.value, "code", None), getattr(e.value, "status_code", None)) == ("tenant_line_timeout", 503)


# -- metrics --

async def test_refusals_are_counted_per_tenant_and_limit() -> None:
    g = gate(requests_per_minute=1)
    await g.enter("a")
    await refused(g)
    assert g.metrics is not None
    assert sample(g.metrics.registry, "blacksoil:tenant_requests_limited_total", tenant="a",
                  limit="requests_per_minute") == 1.0


async def test_tokens_are_counted_per_tenant() -> None:
    g = gate()
    await g.enter("a")
    g.charge("a", 42)
    assert g.metrics is not None
    assert sample(g.metrics.registry, "blacksoil:tenant_tokens_total", tenant="a") == 42.0


async def test_made_up_tenants_beyond_the_label_cap_share_one_label() -> None:
    g = gate()
    for i in range(LABELS_MAX + 5):
        await g.enter(f"t{i}")
    assert g.metrics is not None
    assert sample(g.metrics.registry, "blacksoil:tenant_requests_total", tenant="other") == 5.0


# -- configuration --

def test_a_tenant_override_inherits_the_fields_it_does_not_set() -> None:
    cfg = TenancyConfig(default=TenantLimits(requests_per_minute=60, max_concurrent=4),
                        tenants={"acme": TenantLimits(max_concurrent=1)})
    assert cfg.limits_for("acme") == TenantLimits(requests_per_minute=60, max_concurrent=1)


def test_limits_are_read_from_blacksoil_toml(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "blacksoil.toml").write_text(
        "[serving.tenancy.default]\nrequests_per_minute = 120\n\n"
        "[serving.tenancy.tenants.acme]\ntokens_per_minute = 5000\n")
    monkeypatch.setenv("BLACKSOIL_CONFIG", str(tmp_path / "blacksoil.toml"))
    assert load_settings().serving.tenancy.limits_for("acme") == TenantLimits(requests_per_minute=120,
                                                                             tokens_per_minute=5000)


def test_a_zero_rate_limit_is_refused_with_the_field_name() -> None:
    with pytest.raises(ValueError, match="requests_per_minute"):
        TenantLimits(requests_per_minute=0)


# -- the real gateway --

@pytest.fixture(scope="module")
def limited() -> dict[str, httpx.Response]:
    """Tenant `flood` may send 1 request a minute; it sends 2, then tenant `calm` sends 1."""
    cfg = small_config(tenancy={"tenants": {"flood": {"requests_per_minute": 1}}})
    body = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 1}
    with gateway(load_settings(), serving=cfg) as gw, httpx.Client(base_url=gw.url, timeout=60) as c:
        return {"first": c.post("/v1/chat/completions", json=body, headers={"X-Tenant": "flood"}),
                "second": c.post("/v1/chat/completions", json=body, headers={"X-Tenant": "flood"}),
                "other": c.post("/v1/chat/completions", json=body, headers={"X-Tenant": "calm"}),
                "metrics": c.get("/metrics")}


def test_gateway_serves_a_tenant_within_its_limit(limited: dict[str, httpx.Response]) -> None:
    assert limited["first"].status_code == 200


def test_gateway_answers_429_over_a_tenant_limit(limited: dict[str, httpx.Response]) -> None:
    assert limited["second"].status_code == 429


def test_the_429_carries_retry_after_until_the_minute_is_over(limited: dict[str, httpx.Response]) -> None:
    assert 55 <= int(limited["second"].headers["Retry-After"]) <= 60


def test_the_429_names_the_limit_in_the_one_error_shape(limited: dict[str, httpx.Response]) -> None:
    assert limited["second"].json()["error"]["code"] == "tenant_requests_per_minute"


def test_another_tenant_is_still_served(limited: dict[str, httpx.Response]) -> None:
    assert limited["other"].status_code == 200


def test_metrics_count_the_refusal_per_tenant(limited: dict[str, httpx.Response]) -> None:
    assert 'blacksoil:tenant_requests_limited_total{limit="requests_per_minute",tenant="flood"} 1.0' \
        in limited["metrics"].text
