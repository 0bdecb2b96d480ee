"""`blacksoil bench serving`: gateway overhead, prefix-reuse TTFT, agent sessions (agent-aware vs FCFS), and (in
bench_programs.py) agent programs on scarce slots and tenant isolation.

The first three comparisons run against one embedded engine, the last two against two more (one per policy);
results go through blacksoil.benchlog.report.
"""

from __future__ import annotations

import asyncio
import json
import random
import statistics
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import httpx
from rich.progress import Progress

from blacksoil.benchlog import Destination, report
from blacksoil.config import Settings
from blacksoil.serving.bench_programs import run_scarce
from blacksoil.serving.bench_tools import run_tools
from blacksoil.serving.config import ServingConfig
from blacksoil.serving.launch import GatewayHandle, gateway
from blacksoil.serving.workload import Turn, filler, sample

_LIMITS = httpx.Limits(keepalive_expiry=2.0)  # shorter than the servers' keep-alive: no stale sockets
SCALE = 32  # trace tokens per benchmark token: the 135M model on 2 cores, not a 70B on a GPU cluster


@dataclass
class StreamStats:
    """One streamed request as the client saw it."""

    ttft_s: float
    itl_s: list[float] = field(default_factory=list)
    e2e_s: float = 0.0
    text: str = ""


async def stream_once(client: httpx.AsyncClient, url: str, body: dict[str, Any],
                      headers: dict[str, str] | None = None) -> StreamStats:
    """POST a streaming chat request and time every content chunk.

    A connection the server closed as the request went out (llama.cpp's HTTP server caps requests per
    keep-alive connection) is retried once on a fresh socket, as the gateway's own engine client does.
    """
    try:
        return await _stream_once(client, url, body, headers)
    except httpx.RemoteProtocolError:
        return await _stream_once(client, url, body, headers)


async def _stream_once(client: httpx.AsyncClient, url: str, body: dict[str, Any],
                       headers: dict[str, str] | None) -> StreamStats:
    t0 = time.perf_counter()
    stats = StreamStats(ttft_s=float("nan"))
    last: float | None = None
    parts: list[str] = []
    async with client.stream("POST", url + "/chat/completions", json=body | {"stream": True},
                             headers=headers or {}) as r:
        if r.status_code != 200:
            raise RuntimeError(f"{url} answered {r.status_code}: {(await r.aread())[:300]!r}")
        async for line in r.aiter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            chunk = json.loads(line[6:])
            if "error" in chunk:
                raise RuntimeError(f"stream error: {chunk['error']}")
            piece = chunk["choices"][0]["delta"].get("content") if chunk.get("choices") else None
            if piece:
                now = time.perf_counter()
                if last is None:
                    stats.ttft_s = now - t0
                else:
                    stats.itl_s.append(now - last)
                last = now
                parts.append(piece)
    stats.e2e_s = time.perf_counter() - t0
    stats.text = "".join(parts)
    return stats


def pct(xs: list[float], q: float) -> float:
    """The q-th percentile (nearest rank) in the same unit as xs."""
    if not xs:
        return float("nan")
    s = sorted(xs)
    return s[min(len(s) - 1, max(0, round(q / 100 * (len(s) - 1))))]


async def single_stream(gw: GatewayHandle, direct: str, n: int, tokens: int, progress: Progress,
                        direct_headers: dict[str, str] | None = None) -> dict[str, Any]:
    """Comparison 1: the same request, round-robin through the gateway and straight to the engine.

    `direct_lp` is the direct arm asking for the token logprobs the gateway captures for experience events:
    it separates the engine's extra work from the gateway's relay cost.
    """
    task = progress.add_task("1/3 single stream: gateway vs direct", total=3 * n)
    body = {"model": gw.model, "messages": [{"role": "user", "content": "Write about factories."}],
            "max_tokens": tokens, "temperature": 0, "ignore_eos": True}
    arms = [("gateway", gw.openai_base_url, body, None), ("direct", direct, body, direct_headers),
            ("direct_lp", direct, body | {"logprobs": True, "top_logprobs": 1}, direct_headers)]
    res: dict[str, list[StreamStats]] = {name: [] for name, _, _, _ in arms}
    async with httpx.AsyncClient(timeout=600, limits=_LIMITS) as client:
        for _, url, b, h in arms:  # warm up: every arm finds the prompt cached in its slot
            await stream_once(client, url, b | {"max_tokens": 2}, h)
        for i in range(n):
            for name, url, b, h in arms[i % 3:] + arms[:i % 3]:  # rotate the order to cancel load drift
                res[name].append(await stream_once(client, url, b, h))
                progress.advance(task)
    out: dict[str, Any] = {}
    for name, runs in res.items():
        itl = [x for r in runs for x in r.itl_s]
        ttft = [r.ttft_s for r in runs]
        out |= {f"{name}_ttft_p50_ms": pct(ttft, 50) * 1e3, f"{name}_ttft_p99_ms": pct(ttft, 99) * 1e3,
                f"{name}_itl_p50_ms": pct(itl, 50) * 1e3, f"{name}_itl_p99_ms": pct(itl, 99) * 1e3}
    return out


def engine_prompt_counters(engine_root: str, headers: dict[str, str] | None = None) -> dict[str, float]:
    """llama.cpp's own counters: prompt tokens computed and prompt tokens reused from its cache."""
    text = httpx.get(engine_root + "/metrics", headers=headers, timeout=30).text
    want = {"llamacpp:prompt_tokens_total": "computed", "llamacpp:prompt_tokens_cached_total": "cached"}
    out = {}
    for line in text.splitlines():
        name, _, value = line.partition(" ")
        if name in want:
            out[want[name]] = float(value)
    return out


async def prefix_reuse(gw: GatewayHandle, n: int, prefix_tokens: int, progress: Progress) -> dict[str, Any]:
    """Comparison 2: TTFT of a session's next turn vs the same prompt sent cold (unique lead, nothing cached)."""
    task = progress.add_task("2/3 prefix reuse: next turn vs cold", total=n)
    rng = random.Random(1)
    warm, cold = [], []
    async with httpx.AsyncClient(timeout=600, limits=_LIMITS) as client:
        for i in range(n):
            session = f"prefix-{uuid.uuid4().hex[:8]}"
            history = [{"role": "system", "content": filler(prefix_tokens, rng, tag=session)},
                       {"role": "user", "content": "Summarize the shift log."}]
            base = {"model": gw.model, "max_tokens": 8, "temperature": 0, "ignore_eos": True}
            first = await stream_once(client, gw.openai_base_url, base | {"messages": history},
                                      {"X-Session-Id": session})
            history += [{"role": "assistant", "content": first.text},
                        {"role": "user", "content": f"And what about line {i}?"}]
            nxt = await stream_once(client, gw.openai_base_url, base | {"messages": history},
                                    {"X-Session-Id": session})
            # Same prompt, but a different first token: no slot holds any of its prefix.
            cold_history = [{"role": "system", "content": "cold " + str(history[0]["content"])}, *history[1:]]
            c = await stream_once(client, gw.openai_base_url, base | {"messages": cold_history},
                                  {"X-Session-Id": session + "-cold"})
            warm.append(nxt.ttft_s)
            cold.append(c.ttft_s)
            progress.advance(task)
    w, c50 = statistics.median(warm), statistics.median(cold)
    return {"prefix_warm_ttft_ms": w * 1e3, "prefix_cold_ttft_ms": c50 * 1e3, "prefix_ttft_speedup": c50 / w}


async def agent_sessions(url: str, model: str, sessions: list[list[Turn]], *, use_session_header: bool,
                         progress: Progress, label: str, seed: int,
                         headers: dict[str, str] | None = None) -> list[float]:
    """Comparison 3: K agent sessions at once; each turn re-sends the growing context; returns completion times."""
    total = sum(len(s) for s in sessions)
    task = progress.add_task(f"3/3 agent sessions ({label})", total=total)
    run = uuid.uuid4().hex[:6]  # a fresh shared prefix per run: nothing cached from the other run
    shared = filler(512 // SCALE, random.Random(seed), tag=f"run {run} plant assistant.")

    async def one(i: int, turns: list[Turn], client: httpx.AsyncClient) -> float:
        rng = random.Random(seed * 1000 + i)
        sent = dict(headers or {}) | ({"X-Session-Id": f"{run}-{i}"} if use_session_header else {})
        messages: list[dict[str, str]] = [{"role": "system", "content": shared}]
        await asyncio.sleep(rng.uniform(0, 0.5))
        t0 = time.perf_counter()
        for turn in turns:
            messages.append({"role": "user", "content": filler(turn.new_tokens, rng)})
            body = {"model": model, "messages": messages, "max_tokens": turn.output_tokens, "temperature": 0,
                    "ignore_eos": True}
            r = await stream_once(client, url, body, sent)
            messages.append({"role": "assistant", "content": r.text})
            progress.advance(task)
            await asyncio.sleep(turn.pause_s)  # the agent runs its tool
        return time.perf_counter() - t0

    async with httpx.AsyncClient(timeout=900, limits=_LIMITS) as client:
        return list(await asyncio.gather(*(one(i, s, client) for i, s in enumerate(sessions))))


def bench_config(base: ServingConfig) -> ServingConfig:
    """The engine both arms share: 8 slots of 2048 tokens, threads = half the cores."""
    return ServingConfig.model_validate(base.model_dump() | {
        "replicas": 1, "slots": 8, "ctx": 16384, "concurrency": 0, "policy": "agent", "upstreams": (),
        "queue_max": 256, "queue_timeout_s": 600.0})


def run_bench(s: Settings, *, quick: bool, dest: Destination, sessions: int = 8, seed: int = 0) -> dict[str, Any]:
    """Run the three comparisons and report them."""
    n_single, tokens, n_prefix, max_turns = (6, 32, 2, 3) if quick else (12, 64, 5, 6)
    workload = sample(sessions, seed, scale=SCALE, max_turns=max_turns)
    cfg = bench_config(s.serving)
    t_start = time.perf_counter()
    with Progress() as progress, gateway(s, serving=cfg) as gw:
        engine = gw.pool.replicas["r0"].engine
        direct, key = engine.api_base, engine.auth_headers()  # the engine answers only the gateway's key
        single = asyncio.run(single_stream(gw, direct, n_single, tokens, progress, key))
        progress.console.log(f"single stream done at {time.perf_counter() - t_start:.0f} s")
        prefix = asyncio.run(prefix_reuse(gw, n_prefix, 300 if quick else 600, progress))
        progress.console.log(f"prefix reuse done at {time.perf_counter() - t_start:.0f} s")
        # Quick: FCFS then blacksoil. Full: A-B-B-A, so a drift in machine load favours neither arm.
        order = ["fcfs", "blacksoil"] if quick else ["fcfs", "blacksoil", "blacksoil", "fcfs"]
        times: dict[str, list[float]] = {"fcfs": [], "blacksoil": []}
        cache = {f"prompt_tokens_{kind}_{arm}": 0.0 for arm in times for kind in ("computed", "cached")}
        for arm in order:
            before = engine_prompt_counters(engine.root_url, key)
            url = direct if arm == "fcfs" else gw.openai_base_url
            times[arm] += asyncio.run(agent_sessions(url, gw.model, workload, use_session_header=arm != "fcfs",
                                                     progress=progress, label=arm, seed=seed,
                                                     headers=key if arm == "fcfs" else None))
            after = engine_prompt_counters(engine.root_url, key)
            for kind in ("computed", "cached"):
                cache[f"prompt_tokens_{kind}_{arm}"] += after[kind] - before[kind]
            progress.console.log(f"{arm} sessions done at {time.perf_counter() - t_start:.0f} s")
        fcfs, ours = times["fcfs"], times["blacksoil"]
        # 6: parallel tool calls, and a real agent framework's calls per question
        tools, tool_rows = run_tools(gw.openai_base_url, gw.model, quick=quick, progress=progress)
    # 4 + 5: more agent programs than slots (agent policy vs FCFS side by side), and a flooding tenant
    scarce, scarce_rows = run_scarce(s, quick=quick, seed=seed)
    result = {
        "gateway_itl_p99_ms": single["gateway_itl_p99_ms"], "direct_itl_p99_ms": single["direct_itl_p99_ms"],
        "gateway_overhead_ratio": single["gateway_itl_p99_ms"] / single["direct_itl_p99_ms"],
        "prefix_ttft_speedup": prefix["prefix_ttft_speedup"], "sessions": len(workload),
        "session_runs_per_arm": len(order) // 2,
        "session_p50_s_fcfs": pct(fcfs, 50), "session_p99_s_fcfs": pct(fcfs, 99),
        "session_p50_s_blacksoil": pct(ours, 50), "session_p99_s_blacksoil": pct(ours, 99),
        "session_p99_speedup": pct(fcfs, 99) / pct(ours, 99), "quick": quick,
        "turns": sum(len(s) for s in workload), "engine_threads": cfg.engine_threads(),
        "wall_s": time.perf_counter() - t_start,
    } | cache | {k: round(v, 2) for k, v in (single | prefix).items() if k not in ("prefix_ttft_speedup",)} | scarce
    result |= tools
    rows = [
        ["1 single stream", "TTFT p50 / p99 (ms)", f"{single['gateway_ttft_p50_ms']:.0f} / "
         f"{single['gateway_ttft_p99_ms']:.0f}", f"{single['direct_ttft_p50_ms']:.0f} / "
         f"{single['direct_ttft_p99_ms']:.0f}", "gateway | direct"],
        ["1 single stream", "ITL p50 / p99 (ms)", f"{single['gateway_itl_p50_ms']:.1f} / "
         f"{single['gateway_itl_p99_ms']:.1f}", f"{single['direct_itl_p50_ms']:.1f} / "
         f"{single['direct_itl_p99_ms']:.1f}", f"overhead ratio {result['gateway_overhead_ratio']:.2f} (≤ 1.10)"],
        ["1 single stream", "ITL p50 / p99 (ms), direct + logprobs", "", f"{single['direct_lp_itl_p50_ms']:.1f} / "
         f"{single['direct_lp_itl_p99_ms']:.1f}", "the engine's cost of the token capture the gateway asks for"],
        ["2 prefix reuse", "TTFT (ms)", f"{prefix['prefix_warm_ttft_ms']:.0f}", f"{prefix['prefix_cold_ttft_ms']:.0f}",
         f"next turn | cold; speedup {prefix['prefix_ttft_speedup']:.1f}× (≥ 5)"],
        ["3 agent sessions", f"completion p50 / p99 (s), {len(workload)} sessions", f"{pct(ours, 50):.1f} / "
         f"{pct(ours, 99):.1f}", f"{pct(fcfs, 50):.1f} / {pct(fcfs, 99):.1f}",
         f"blacksoil | FCFS; p99 speedup {result['session_p99_speedup']:.2f}× (≥ 1.5)"],
        ["3 agent sessions", "prompt tokens computed / from cache", f"{cache['prompt_tokens_computed_blacksoil']:.0f}"
         f" / {cache['prompt_tokens_cached_blacksoil']:.0f}", f"{cache['prompt_tokens_computed_fcfs']:.0f} / "
         f"{cache['prompt_tokens_cached_fcfs']:.0f}", "llama.cpp's own counters per arm"],
    ]
    rows += scarce_rows + tool_rows
    notes = (f"Engine: embedded llama.cpp, default model, {cfg.slots} slots × {cfg.ctx // cfg.slots} tokens, "
             f"{cfg.engine_threads()} thread(s); gateway admits {cfg.admitted()} at once. Workload: "
             f"{len(workload)} sessions sampled (seed {seed}) from the Mooncake conversation trace, tokens ÷ {SCALE}, "
             "tool pauses 0.2–2 s; FCFS = the same engine reached directly (its own FIFO and slot choice). "
             f"Arms ran in the order {' → '.join(order)}.")
    report("serving: gateway overhead, prefix reuse, agent sessions", ["comparison", "measure", "blacksoil/gateway",
           "baseline", "note"], rows, result, notes=notes, dest=dest)
    return result
