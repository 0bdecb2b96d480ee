"""Routing across serving replicas, measured: agent sessions over two engine replica actors under two gateway policies.

The workload is an agent fleet scaled to 1-CPU replicas. `sessions` concurrent sessions alternate between two
agents (the groups). Each agent's system prompt is its instructions plus its eight tools' JSON schemas (~900
tokens), the same for every session of that agent, as agent frameworks send it. A session opens with its own ticket
(~40 tokens); each turn the model answers (4 tokens: the time to the first one is what is measured), then the loop
appends the tool call it made and, after the tool's 1-3 s, its JSON result (5 rows, ~250 tokens), and asks again,
`turns` times: the context grows the way an agent loop's does.

Arms, each on two fresh replica actors behind a fresh gateway (`ServingConfig.policy`):
- `round_robin`: every request to the next replica in turn, as an L4 load balancer or a Kubernetes Service does;
  the engine picks the slot (llama.cpp: the idle slot whose prompt matches best).
- `prefix_affinity`: the agent policy: a returning session to the replica and slot holding its context, a new one
  to the replica holding its agent's system prompt (rendezvous hashing of the prefix key, bounded loads).

Each arm first runs a cold wave: `sessions` one-turn sessions on the freshly started engines (`cold_ttft_p99_s`).
What the keys report (TTFTs, the p99 speedup, `prefix_hit_ratio`, prompt tokens computed) is the warm wave that
follows: `sessions` new sessions of `turns` turns, as a fleet that has been serving these agents sees them. The
cold wave is kept apart because it is a once-per-replica start, and there the result is the other way: prefix
affinity computes the system prompt once per slot, while round robin's engine-chosen slots let later sessions
share it (serving/admission.py has the numbers). TTFT is measured by the client, gateway queue included.
`prefix_hit_ratio` = prompt tokens the engines took from their KV caches / all prompt tokens (llama.cpp's own
counters, summed by the gateway's /metrics, warm wave only).
"""

from __future__ import annotations

import json
import re
import statistics
import threading
import time
from typing import Any

import httpx

from blacksoil.config import Settings
from blacksoil.scheduling.backends.ray_platform import ray_replicas
from blacksoil.scheduling.backends.ray_serving import EngineSpec
from blacksoil.serving.config import ServingConfig

ARMS = (("round_robin", "round_robin"), ("prefix_affinity", "agent"))
"""(arm label, gateway policy), baseline first."""
SLOTS, CTX, CONCURRENCY = 4, 12288, 2
"""Per replica: KV slots, context tokens (3072 a slot: the 6th turn's ~2.4k-token prompt fits), requests at once."""
RESULT_ROWS = 5
"""Rows of each tool result (~250 tokens)."""

_AGENTS = {
    "maintenance": ("You are the maintenance agent of a car-parts plant. You keep the presses, pumps and conveyors "
                    "running: read the sensors, compare them with the limits, look up the machine's history, and "
                    "file a work order when a part must be replaced. Call one tool per step; never guess a reading.",
                    ["read", "trend", "limits", "history", "open_orders", "file_order", "spare_parts", "schedule"],
                    ["machine_id", "sensor", "window_min", "since", "part_no", "priority", "shift", "note"]),
    "supply": ("You are the supply agent of a car-parts plant. You keep the lines fed: check stock and inbound "
               "shipments, compare them with the production plan, reserve material, and raise a purchase request "
               "when a part runs short. Call one tool per step; never invent a quantity.",
               ["stock", "inbound", "plan", "reserve", "release", "purchase", "supplier", "lead_time"],
               ["part_no", "site", "week", "quantity", "supplier_id", "order_id", "due", "note"]),
}
"""The two agents (session groups): instructions, tool verbs, tool parameters."""
_WORDS = ["valve", "pump", "spindle", "torque", "coolant", "press", "conveyor", "sensor", "shift", "batch", "line",
          "motor", "bearing", "filter", "gauge", "pressure", "belt", "drill", "weld", "paint"]


def system_prompt(agent: str) -> str:
    """The agent's instructions and its tools' JSON schemas: the prefix its sessions share."""
    text, verbs, params = _AGENTS[agent]
    tools = [{"name": f"{agent}_{v}", "description": f"{v.replace('_', ' ').capitalize()}: JSON rows, newest first; "
              "an error object for an unknown id.",
              "parameters": {"type": "object", "required": params[i % 3: i % 3 + 2],
                             "properties": {p: {"type": "integer" if p in ("window_min", "quantity", "week") else
                                                "string", "description": f"the {p.replace('_', ' ')}"}
                                            for p in params[i % 3: i % 3 + 3]}}}
             for i, v in enumerate(verbs)]
    return text + "\n\nTools:\n" + "\n".join(json.dumps(t) for t in tools)


def tool_result(session: int, turn: int, rows: int = RESULT_ROWS) -> str:
    """A tool's JSON answer (readings or stock rows), different for every session and turn."""
    out = [{"t": f"2026-12-06T{(6 + (session + i) % 12):02d}:{(turn * 7 + i * 3) % 60:02d}",
            "id": f"{_WORDS[(session + i) % len(_WORDS)]}-{(session * 31 + turn * 7 + i) % 97}",
            "value": round(20 + ((session * 13 + turn * 5 + i * 7) % 400) / 10, 1), "ok": (i + turn) % 5 != 0}
           for i in range(rows)]
    return json.dumps(out)


def tool_s(session: int, turn: int) -> float:
    """How long a tool call takes (s): 1 to 3 s, different per session and turn, as API calls and queries do."""
    return 1.0 + ((session * 7 + turn * 3) % 5) * 0.5


def stream_turn(client: httpx.Client, url: str, body: dict[str, Any], session: str) -> tuple[float | None, bool]:
    """One streamed request: (seconds to the first content chunk or None, whether the stream failed). Every phase
    of the cluster bench measures its requests with it."""
    t0 = time.perf_counter()
    ttft = None
    error = False
    with client.stream("POST", url, json=body | {"stream": True}, headers={"X-Session-Id": session}) as r:
        if r.status_code != 200:
            return None, True
        for line in r.iter_lines():
            if not line.startswith("data:") or line == "data: [DONE]":
                continue
            if '"error"' in line[:20]:
                error = True
            elif ttft is None and '"content"' in line:
                ttft = time.perf_counter() - t0
    return ttft, error


def _wave(url: str, model: str, sessions: range, turns: int) -> tuple[list[float], list[float], int]:
    """`sessions` concurrent agent sessions of `turns` turns: (first-turn TTFTs, later-turn TTFTs, failed requests)."""
    agents = list(_AGENTS)
    first: list[float] = []
    later: list[float] = []
    failed = 0

    def session(k: int) -> None:
        nonlocal failed
        agent = agents[k % len(agents)]
        msgs = [{"role": "system", "content": system_prompt(agent)},
                {"role": "user", "content": f"Ticket {k}: line {k % 3 + 1} reports a fault on "
                                            f"{_WORDS[k % len(_WORDS)]} {k * 7 % 97}. Find the cause and act."}]
        with httpx.Client(timeout=300) as client:
            for t in range(turns):
                body = {"model": model, "messages": msgs, "max_tokens": 4, "temperature": 0}
                ttft, err = stream_turn(client, url, body, f"{agent}-{k}")
                if ttft is None or err:
                    failed += 1
                else:
                    (first if t == 0 else later).append(ttft)
                verb = _AGENTS[agent][1][(k + t) % len(_AGENTS[agent][1])]
                call = json.dumps({"tool": f"{agent}_{verb}", "arguments": {"id": f"{k}-{t}"}})
                msgs = [*msgs, {"role": "assistant", "content": call},
                        {"role": "user", "content": "Tool result: " + tool_result(k, t)}]
                if t + 1 < turns:
                    time.sleep(tool_s(k, t))  # the tool runs

    threads = [threading.Thread(target=session, args=(k,)) for k in sessions]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    return first, later, failed


def routing_arm(s: Settings, address: str, policy: str, sessions: int, turns: int) -> dict[str, Any]:
    """Two replica actors under one gateway policy: a cold wave (`sessions` one-turn sessions on the fresh engines),
    then the measured wave (`sessions` new sessions of `turns` turns on the warm engines): its TTFTs and the prompt
    tokens the engines took from their caches."""
    from blacksoil.serving.launch import gateway

    cfg = ServingConfig.model_validate({"threads": 1, "slots": SLOTS, "concurrency": CONCURRENCY, "ctx": CTX,
                                        "policy": policy, "default_max_tokens": 4, "queue_timeout_s": 300.0})
    with gateway(s, serving=cfg) as gw, \
            ray_replicas(gw.pool, address, 2, EngineSpec(slots=SLOTS, ctx=CTX, threads=1)) as members:
        url = gw.openai_base_url + "/chat/completions"
        cold, _, cold_failed = _wave(url, gw.model, range(sessions, 2 * sessions), 1)
        before = httpx.get(gw.url + "/metrics").text
        first, later, failed = _wave(url, gw.model, range(sessions), turns)
        after = httpx.get(gw.url + "/metrics").text
        nodes = len({members.node_of(n) for n in members.members})
    hits, prompt = (_metric(after, m) - _metric(before, m) for m in ("prefix_cache_hits_total", "prompt_tokens_total"))
    ttfts = first + later
    return {"ttft_p50_s": statistics.median(ttfts) if ttfts else None, "ttft_p99_s": p99(ttfts),
            "first_turn_ttft_p99_s": p99(first), "followup_ttft_p99_s": p99(later), "cold_ttft_p99_s": p99(cold),
            "prefix_hit_ratio": hits / prompt if prompt else 0.0, "prompt_tokens": prompt,
            "prompt_tokens_computed": prompt - hits, "requests": len(ttfts) + len(cold) + failed + cold_failed,
            "failed": failed + cold_failed,
            "nodes": nodes}


def routing_phase(s: Settings, address: str, sessions: int, turns: int) -> dict[str, dict[str, Any]]:
    """Both arms, the baseline first: {arm label: routing_arm's result}."""
    return {label: routing_arm(s, address, policy, sessions, turns) for label, policy in ARMS}


def bench_keys(arms: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The routing keys of the bench's JSON line."""
    rr, ours = arms[ARMS[0][0]], arms[ARMS[1][0]]
    speedup = rr["ttft_p99_s"] / ours["ttft_p99_s"] if rr["ttft_p99_s"] and ours["ttft_p99_s"] else None
    return {"ttft_p99_speedup_vs_round_robin": _r(speedup),
            "prefix_hit_ratio": {k: _r(v["prefix_hit_ratio"]) for k, v in arms.items()},
            "ttft_p99_s": {k: _r(v["ttft_p99_s"]) for k, v in arms.items()},
            "ttft_p50_s": {k: _r(v["ttft_p50_s"]) for k, v in arms.items()},
            "first_turn_ttft_p99_s": {k: _r(v["first_turn_ttft_p99_s"]) for k, v in arms.items()},
            "followup_ttft_p99_s": {k: _r(v["followup_ttft_p99_s"]) for k, v in arms.items()},
            "cold_ttft_p99_s": {k: _r(v["cold_ttft_p99_s"]) for k, v in arms.items()},
            "prompt_tokens_computed": {k: int(v["prompt_tokens_computed"]) for k, v in arms.items()},
            "routing_failed": {k: v["failed"] for k, v in arms.items()}}


def bench_rows(arms: dict[str, dict[str, Any]]) -> list[list[Any]]:
    """The routing rows of the bench's table (phase, measure, value)."""
    rows: list[list[Any]] = []
    for k, v in arms.items():
        rows += [[f"routing {k}", "TTFT p50 / p99 (s)", f"{_r(v['ttft_p50_s'])} / {_r(v['ttft_p99_s'])}"],
                 [f"routing {k}", "first-turn / follow-up TTFT p99 (s)",
                  f"{_r(v['first_turn_ttft_p99_s'])} / {_r(v['followup_ttft_p99_s'])}"],
                 [f"routing {k}", "cold wave (fresh engines) TTFT p99 (s)", _r(v["cold_ttft_p99_s"])],
                 [f"routing {k}", "prefix hit ratio (prompt tokens computed)",
                  f"{_r(v['prefix_hit_ratio'])} ({int(v['prompt_tokens_computed'])})"],
                 [f"routing {k}", "failed / requests", f"{v['failed']} / {v['requests']}"]]
    rows.append(["routing", "TTFT p99 speedup vs round robin", bench_keys(arms)["ttft_p99_speedup_vs_round_robin"]])
    return rows


def p99(xs: list[float]) -> float | None:
    """The 99th percentile (nearest rank), None for no samples."""
    if not xs:
        return None
    xs = sorted(xs)
    return xs[min(len(xs) - 1, round(0.99 * (len(xs) - 1)))]


def _metric(text: str, suffix: str) -> float:
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if not line.startswith("#") and re.match(rf"^[\w:]+{suffix}(\{{|\s)", line))


def _r(x: float | None, nd: int = 3) -> float | None:
    return None if x is None else round(float(x), nd)
