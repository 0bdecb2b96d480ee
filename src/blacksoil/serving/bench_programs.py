"""Where agent-aware scheduling should matter, measured: more agent programs than slots, and a flooding tenant.

Two measurements of `blacksoil bench serving`, both on one engine with few slots:

- programs: N agent programs (each a session of 1–20 model calls, heavy-tailed, with tool pauses between calls)
  arrive within a few seconds on an engine with far fewer slots than programs. The same programs run under
  FCFS and under the default agent policy (priority, then arrival; slot affinity) of the same gateway; the
  metric is each program's completion time, arrival to last answer (Autellix, Luo et al. 2025), plus the
  prompt tokens each arm's engine computed and took from its cache (what slot affinity is for). Least attained
  service per session was measured here too, lost as often as it won, and was removed (serving/admission.py).
- tenant isolation: a calm tenant's TTFT p99 while a tenant limited to `max_concurrent = 1` uses exactly its
  share, and while it floods with many more requests (tests/serving/test_tenancy_isolation.py asserts ≤ 1.2).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import time
import uuid
from typing import Any

import httpx
from rich.console import Console

from blacksoil.config import Settings
from blacksoil.serving.config import ServingConfig
from blacksoil.serving.launch import GatewayHandle, gateway
from blacksoil.serving.workload import Turn, filler

MAX_CALLS = 20
"""Longest program (model calls)."""
PARETO_ALPHA = 0.9
"""Shape of the program-length distribution: most programs are short, a few run to MAX_CALLS."""
FLOOD_TENANT = "flood"
"""The tenant the isolation measurement floods with; the scarce-slot gateway caps it at 1 request in flight."""
_LIMITS = httpx.Limits(keepalive_expiry=2.0)


def scarce_config(base: ServingConfig, slots: int = 4) -> ServingConfig:
    """One replica with `slots` slots (all admitted at once), and the flood tenant capped at 1 in flight."""
    return ServingConfig.model_validate(base.model_dump() | {
        "replicas": 1, "slots": slots, "ctx": 1024 * slots, "concurrency": 0, "policy": "agent", "upstreams": (),
        "queue_max": 512, "queue_timeout_s": 600.0,
        "tenancy": {"tenants": {FLOOD_TENANT: {"max_concurrent": 1}}}})


def programs(n: int, seed: int) -> list[list[Turn]]:
    """`n` agent programs: Pareto-distributed lengths in [1, MAX_CALLS], short tool results and answers."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        calls = min(MAX_CALLS, int(rng.paretovariate(PARETO_ALPHA)))
        out.append([Turn(rng.randint(8, 24), rng.randint(4, 8), rng.uniform(0.2, 1.0)) for _ in range(calls)])
    return out


def arrivals(n: int, seed: int, window_s: float) -> list[float]:
    """Poisson arrival times of `n` programs, on average `window_s / n` apart (s)."""
    rng = random.Random(seed)
    t, out = 0.0, []
    for _ in range(n):
        out.append(t)
        t += rng.expovariate(n / window_s)
    return out


async def run_programs(url: str, model: str, progs: list[list[Turn]], *, seed: int, label: str,
                       arrival_window_s: float) -> list[float]:
    """Run the programs, arriving as a Poisson process over about `arrival_window_s`; each one's completion
    time from its arrival to its last answer (s)."""
    run = uuid.uuid4().hex[:6]  # fresh sessions and prompts per arm: nothing cached from the other arm
    starts = arrivals(len(progs), seed, arrival_window_s)

    async def one(i: int, calls: list[Turn], client: httpx.AsyncClient) -> float:
        rng = random.Random(seed * 7919 + i)
        await asyncio.sleep(starts[i])
        t0 = time.perf_counter()
        messages = [{"role": "system", "content": filler(48, rng, tag=f"{label} {run} program {i}.")}]
        for call in calls:
            messages.append({"role": "user", "content": filler(call.new_tokens, rng)})
            body = {"model": model, "messages": messages, "max_tokens": call.output_tokens, "temperature": 0,
                    "ignore_eos": True, "user": f"{run}-{i}"}
            r = await client.post(url + "/chat/completions", json=body)
            if r.status_code != 200:
                raise RuntimeError(f"program {i} call failed: HTTP {r.status_code} {r.text[:200]}")
            messages.append({"role": "assistant", "content": r.json()["choices"][0]["message"]["content"] or ""})
            await asyncio.sleep(call.pause_s)  # the agent runs its tool
        return time.perf_counter() - t0

    async with httpx.AsyncClient(timeout=900, limits=_LIMITS) as client:
        return list(await asyncio.gather(*(one(i, p, client) for i, p in enumerate(progs))))


async def _both(gws: dict[str, GatewayHandle], progs: list[list[Turn]], seed: int,
                window_s: float) -> dict[str, list[float]]:
    arms = list(gws)
    done = await asyncio.gather(*(run_programs(gws[a].openai_base_url, gws[a].model, progs, seed=seed, label=a,
                                               arrival_window_s=window_s) for a in arms))
    return dict(zip(arms, done, strict=True))


def _prompt_counters(gw: GatewayHandle) -> dict[str, float]:
    """llama.cpp's prompt-token counters (computed, cached) of the gateway's one engine."""
    from blacksoil.serving.bench import engine_prompt_counters  # bench imports this module

    engine = gw.pool.replicas["r0"].engine
    return engine_prompt_counters(engine.root_url, engine.auth_headers())


def program_arms(gws: dict[str, GatewayHandle], progs: list[list[Turn]], *, seed: int,
                 arrival_window_s: float = 40.0) -> tuple[dict[str, list[float]], dict[str, Any]]:
    """Completion times of the same programs on each gateway ('fcfs', 'agent'), the arms at the same time, and
    the prompt tokens each arm's engine computed and reused (`prompt_tokens_computed_<arm>`, `..._cached_<arm>`).

    Each arm has its own engine with the same settings; running them side by side gives both the same machine
    load (on a shared machine, arms run one after the other differed by 1.7× from drift alone).
    """
    before = {a: _prompt_counters(gw) for a, gw in gws.items()}
    times = asyncio.run(_both(gws, progs, seed, arrival_window_s))
    cache: dict[str, Any] = {}
    for a, gw in gws.items():
        after = _prompt_counters(gw)
        for kind in ("computed", "cached"):
            cache[f"program_prompt_tokens_{kind}_{a}"] = after[kind] - before[a][kind]
    return times, cache


# -- tenant isolation --

async def _loop_requests(c: httpx.AsyncClient, tenant: str, stop: asyncio.Event) -> None:
    body = {"messages": [{"role": "user", "content": "Write a long story about a ship."}], "max_tokens": 12}
    while not stop.is_set():
        await c.post("/v1/chat/completions", json=body, headers={"X-Tenant": tenant})


async def _ttft(c: httpx.AsyncClient, tenant: str) -> float:
    """Seconds to the first generated token of a short streamed request."""
    body = {"messages": [{"role": "user", "content": "Say hi."}], "max_tokens": 2, "stream": True, "temperature": 0}
    t0 = time.perf_counter()
    async with c.stream("POST", "/v1/chat/completions", json=body, headers={"X-Tenant": tenant}) as r:
        async for line in r.aiter_lines():
            if not line.startswith("data: {"):
                continue
            # the first generated token: its text, or the finish chunk when it decoded to nothing
            if any((ch.get("delta") or {}).get("content") or ch.get("finish_reason")
                   for ch in json.loads(line[6:]).get("choices", [])):
                return time.perf_counter() - t0
    raise RuntimeError(f"the stream ended without a token (HTTP {r.status_code})")


async def calm_ttfts(url: str, load_tenant: str, clients: int, n: int) -> list[float]:
    """The calm tenant's TTFT over `n` requests while `clients` loops of `load_tenant` send requests."""
    stop = asyncio.Event()
    async with httpx.AsyncClient(base_url=url, timeout=300, limits=_LIMITS) as c:
        await _ttft(c, "calm")  # warm: the first request of a fresh engine is slower
        load = [asyncio.create_task(_loop_requests(c, load_tenant, stop)) for _ in range(clients)]
        await asyncio.sleep(0.5)  # the load reaches its steady state
        samples = [await _ttft(c, "calm") for _ in range(n)]
        stop.set()
        await asyncio.gather(*load)
    return samples


def p99(xs: list[float]) -> float:
    """Nearest-rank 99th percentile."""
    s = sorted(xs)
    return s[min(len(s) - 1, max(0, round(0.99 * (len(s) - 1))))]


def tenant_isolation(url: str, *, n: int = 16, flood_clients: int = 8) -> dict[str, float]:
    """TTFT p99 of a calm tenant: the flood tenant at its share (1 client) vs flooding (`flood_clients`)."""
    fair = p99(asyncio.run(calm_ttfts(url, FLOOD_TENANT, 1, n)))
    flood = p99(asyncio.run(calm_ttfts(url, FLOOD_TENANT, flood_clients, n)))
    return {"tenant_fair_share_ttft_p99_ms": fair * 1e3, "tenant_flood_ttft_p99_ms": flood * 1e3,
            "tenant_isolation_ttft_ratio": flood / fair}


def summary(times: dict[str, list[float]]) -> dict[str, Any]:
    """The benchmark keys of the program arms."""
    f, a = times["fcfs"], times["agent"]
    mean_f, mean_a = sum(f) / len(f), sum(a) / len(a)
    return {"program_mean_s_fcfs": mean_f, "program_mean_s_agent": mean_a, "program_p99_s_fcfs": p99(f),
            "program_p99_s_agent": p99(a), "program_mean_speedup": mean_f / mean_a,
            "program_p99_speedup": p99(f) / p99(a)}


def run_scarce(s: Settings, *, quick: bool, seed: int, n_programs: int = 24,
               slots: int = 4) -> tuple[dict[str, Any], list[list[str]]]:
    """Both measurements for `blacksoil bench serving`: the benchmark keys and the table's rows."""
    cfg = scarce_config(s.serving, slots)
    progs = programs(n_programs, seed)
    t0 = time.perf_counter()
    console = Console(stderr=True)
    console.log(f"4/5 {n_programs} agent programs ({sum(len(p) for p in progs)} calls) on {slots} slots: "
                "FCFS and agent policy side by side (a few minutes)")
    with contextlib.ExitStack() as stack:
        gws = {arm: stack.enter_context(gateway(s, serving=cfg.model_copy(update={"policy": arm})))
               for arm in ("fcfs", "agent")}
        times, cache = program_arms(gws, progs, seed=seed, arrival_window_s=40.0 if quick else 60.0)
        console.log(f"programs done at {time.perf_counter() - t0:.0f} s; 5/5 tenant isolation")
        iso = tenant_isolation(gws["agent"].url, n=16 if quick else 32)
    keys = summary(times) | cache | iso | {"programs": n_programs, "program_calls": sum(len(p) for p in progs),
                                   "program_slots": slots, "scarce_wall_s": time.perf_counter() - t0}
    rows = [
        ["4 scarce slots", f"program completion mean / p99 (s), {n_programs} programs on {slots} slots",
         f"{keys['program_mean_s_agent']:.1f} / {keys['program_p99_s_agent']:.1f}",
         f"{keys['program_mean_s_fcfs']:.1f} / {keys['program_p99_s_fcfs']:.1f}",
         f"agent | FCFS, side by side; speedup mean {keys['program_mean_speedup']:.2f}× p99 "
         f"{keys['program_p99_speedup']:.2f}×"],
        ["4 scarce slots", "prompt tokens computed / from cache",
         f"{cache['program_prompt_tokens_computed_agent']:.0f} / {cache['program_prompt_tokens_cached_agent']:.0f}",
         f"{cache['program_prompt_tokens_computed_fcfs']:.0f} / {cache['program_prompt_tokens_cached_fcfs']:.0f}",
         "llama.cpp's own counters per arm (slot affinity vs the engine's own slot choice)"],
        ["5 tenant isolation", "calm tenant TTFT p99 (ms)", f"{iso['tenant_flood_ttft_p99_ms']:.0f}",
         f"{iso['tenant_fair_share_ttft_p99_ms']:.0f}",
         f"flood (8 clients, max_concurrent 1) | flood tenant at its share; ratio "
         f"{iso['tenant_isolation_ttft_ratio']:.2f} (≤ 1.2)"],
    ]
    return keys, rows
