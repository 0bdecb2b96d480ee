"""A flooding tenant cannot slow another tenant down: TTFT p99 of the calm tenant, real engine, real gateway.

`flood` may have 1 request in flight (`max_concurrent = 1`). The calm tenant's TTFT p99 is measured while
`flood` uses exactly its share (1 request at a time), then while it floods with 8 clients at once: the flood
beyond its share must not raise the p99 by more than 20 %. Without the limit (tenant `greedy`) the same flood
does, which shows the measurement can tell the two apart. The measurement is the benchmark's
(`blacksoil bench serving` reports it as tenant_isolation_ttft_ratio).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from tests.serving.conftest import small_config

from blacksoil.config import load_settings
from blacksoil.serving.bench_programs import FLOOD_TENANT, calm_ttfts, p99, tenant_isolation
from blacksoil.serving.launch import GatewayHandle, gateway


@pytest.fixture(scope="module")
def limited_gw() -> Iterator[GatewayHandle]:
    cfg = small_config(slots=4, concurrency=2, tenancy={"tenants": {FLOOD_TENANT: {"max_concurrent": 1}}})
    with gateway(load_settings(), serving=cfg) as handle:
        yield handle


@pytest.fixture(scope="module")
def measured(limited_gw: GatewayHandle) -> dict[str, float]:
    out = tenant_isolation(limited_gw.url, n=16, flood_clients=8)
    # a few samples suffice to see the unlimited flood: each waits behind the whole flood
    out["unlimited_flood_ttft_p99_ms"] = p99(asyncio.run(calm_ttfts(limited_gw.url, "greedy", 8, 4))) * 1e3
    return out


def test_a_flood_past_max_concurrent_raises_another_tenants_ttft_p99_by_at_most_20_percent(
        measured: dict[str, float]) -> None:
    assert measured["tenant_isolation_ttft_ratio"] <= 1.2, measured


def test_without_the_limit_the_same_flood_raises_it_more(measured: dict[str, float]) -> None:
    assert measured["unlimited_flood_ttft_p99_ms"] / measured["tenant_fair_share_ttft_p99_ms"] > 1.2, measured
