"""`blacksoil bench cluster --quick`: the Ray backend on a local multi-node Ray cluster, measured.

The bench starts (and stops) a `ray.cluster_utils.Cluster` on this machine: a head with no CPUs and two worker
nodes of 1 CPU each, tagged `blacksoil_host_n1`/`n2`. Phases, one after the other (each node's one core is
either an engine's or a trainer rank's, never both):

1. routing: two engine replica actors behind one gateway; sessions with their own long context (and a shared
   system prompt) take turns. Arm `round_robin` = the gateway's fcfs policy (least-loaded replica, no affinity),
   arm `affinity` = its agent policy (a session returns to the replica and slot holding its prefix).
2. replica kill: streams in flight on both replicas, one replica actor killed; streams on it end with an error
   event (`inflight_failed`), requests sent after the kill must all answer (`failed_after_replica_kill`).
3. learner kill: a two-rank LoRA gang (one rank per node, gloo between them) loses rank 1 after two steps; the
   gang restarts from its last checkpoint (`resume_s` = kill to next step; `lost_steps`, `repeated_steps` from
   rank 0's step log).
"""

from __future__ import annotations

import contextlib
import re
import statistics
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

from blacksoil.config import Settings
from blacksoil.errors import ConfigError
from blacksoil.scheduling.backends.ray_learning import LearnerSpec, RayGang, read_steps
from blacksoil.scheduling.backends.ray_platform import ray_replicas
from blacksoil.serving.config import ServingConfig

NODES = ("n1", "n2")
_WORDS = ["valve", "pump", "spindle", "torque", "coolant", "press", "conveyor", "sensor", "shift", "batch", "line",
          "motor", "bearing", "filter", "gauge", "pressure", "belt", "drill", "weld", "paint"]


@contextlib.contextmanager
def local_cluster() -> Iterator[str]:
    """A 0-CPU head and two 1-CPU worker nodes on this machine, with this process connected; yields the address."""
    import ray
    from ray.cluster_utils import Cluster

    if ray.is_initialized():
        raise ConfigError("this process is already a Ray driver; the cluster bench starts its own local cluster")
    cluster = Cluster(initialize_head=True, head_node_args={
        "num_cpus": 0, "include_dashboard": False, "object_store_memory": 80_000_000})
    try:
        for n in NODES:
            cluster.add_node(num_cpus=1, object_store_memory=80_000_000, resources={f"blacksoil_host_{n}": 1})
        ray.init(address=cluster.address, log_to_driver=False)
        cluster.wait_for_nodes()
        yield str(cluster.address)
    finally:
        if ray.is_initialized():
            ray.shutdown()
        cluster.shutdown()


def _context(seed: int, words: int) -> str:
    return " ".join(_WORDS[(seed * 7 + i * i) % len(_WORDS)] + str((seed + i) % 97) for i in range(words))


def _stream(client: httpx.Client, url: str, body: dict[str, Any], session: str) -> tuple[float | None, bool]:
    """(seconds to the first content chunk or None, whether the stream ended in an error event)."""
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


def _metric(text: str, suffix: str) -> float:
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if not line.startswith("#") and re.match(rf"^[\w:]+{suffix}(\{{|\s)", line))


def routing_arm(s: Settings, address: str, policy: str, sessions: int, turns: int) -> dict[str, Any]:
    """TTFTs of `sessions` concurrent multi-turn sessions over two replica actors under one gateway policy."""
    from blacksoil.serving.launch import gateway

    cfg = ServingConfig.model_validate({"threads": 1, "slots": 4, "concurrency": 2, "ctx": 4096, "policy": policy,
                                        "default_max_tokens": 4, "queue_timeout_s": 300.0})
    system = "You are the plant assistant. Shift notes: " + _context(0, 60)
    ttfts: list[float] = []
    follow: list[float] = []
    failed = 0
    with gateway(s, serving=cfg) as gw, ray_replicas(gw.pool, address, 2) as members:
        url = gw.openai_base_url + "/chat/completions"

        def session(k: int) -> None:
            nonlocal failed
            msgs = [{"role": "system", "content": system},
                    {"role": "user", "content": f"Machine log {k}: " + _context(k + 1, 120)}]
            with httpx.Client(timeout=300) as client:
                for t in range(turns):
                    ttft, err = _stream(client, url, {"model": gw.model, "messages": msgs, "max_tokens": 4,
                                                      "temperature": 0}, f"s{k}")
                    if ttft is None or err:
                        failed += 1
                    else:
                        ttfts.append(ttft)
                        if t > 0:
                            follow.append(ttft)
                    msgs = [*msgs, {"role": "assistant", "content": "Noted."},
                            {"role": "user", "content": f"And step {t + 2}?"}]

        threads = [threading.Thread(target=session, args=(k,)) for k in range(sessions)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        text = httpx.get(gw.url + "/metrics").text
        nodes = len({members.node_of(n) for n in members.members})
    hits, prompt = _metric(text, "prefix_cache_hits_total"), _metric(text, "prompt_tokens_total")
    return {"ttft_p50_s": statistics.median(ttfts) if ttfts else None, "ttft_p99_s": _p99(ttfts),
            "followup_ttft_p99_s": _p99(follow), "prefix_hit_ratio": hits / prompt if prompt else 0.0,
            "requests": len(ttfts) + failed, "failed": failed, "nodes": nodes}


def _p99(xs: list[float]) -> float | None:
    if not xs:
        return None
    xs = sorted(xs)
    return xs[min(len(xs) - 1, round(0.99 * (len(xs) - 1)))]


def replica_kill(s: Settings, address: str, streams: int = 4, after: int = 8) -> dict[str, Any]:
    """Kill one of two replica actors under in-flight streams; count what failed then and after."""
    import ray

    from blacksoil.serving.launch import gateway

    cfg = ServingConfig.model_validate({"threads": 1, "slots": 2, "concurrency": 2, "ctx": 2048,
                                        "default_max_tokens": 4, "queue_timeout_s": 120.0})
    with gateway(s, serving=cfg) as gw, ray_replicas(gw.pool, address, 2) as members:
        url = gw.openai_base_url + "/chat/completions"
        body = {"model": gw.model, "messages": [{"role": "user", "content": "Count from one to one hundred."}],
                "max_tokens": 300}
        outcomes: list[bool] = []

        def long_stream(k: int) -> None:
            with httpx.Client(timeout=120) as c:
                outcomes.append(_stream(c, url, body, f"long{k}")[1])

        threads = [threading.Thread(target=long_stream, args=(k,)) for k in range(streams)]
        for th in threads:
            th.start()
        deadline = time.monotonic() + 60
        while not all(i.inflight > 0 for i in gw.pool.info()) and time.monotonic() < deadline:
            time.sleep(0.02)
        victim = next(iter(members.members))
        t_kill = time.monotonic()
        ray.kill(members.actor_of(victim))
        later: list[bool] = []
        with httpx.Client(timeout=120) as c:
            for k in range(after):  # requests started after the kill
                later.append(_stream(c, url, {"model": gw.model, "messages": [{"role": "user", "content": f"Hi {k}"}],
                                              "max_tokens": 2}, f"after{k}")[1])
        for th in threads:
            th.join()
        removed = victim in members.lost
        answered_s = time.monotonic() - t_kill
        # Scale up: a replacement replica from the start call to its first answer (new sessions go to it).
        t_up = time.monotonic()
        fresh = members.start({"num_cpus": 1, "scheduling_strategy": "SPREAD"})
        gw.pool.route_new_sessions_to(fresh)
        with httpx.Client(timeout=120) as c:
            ok = not _stream(c, url, {"model": gw.model, "messages": [{"role": "user", "content": "Hello"}],
                                      "max_tokens": 2}, "fresh")[1]
        scale_up_s = time.monotonic() - t_up if ok else None
    return {"inflight_failed": sum(outcomes), "inflight": len(outcomes), "failed_after_replica_kill": sum(later),
            "after": len(later), "dead_replica_removed": removed, "kill_to_all_answered_s": answered_s,
            "scale_up_s": scale_up_s}


def learner_kill(s: Settings, run_dir: Path, steps: int = 6) -> dict[str, Any]:
    """A two-rank gang (one rank per node) loses rank 1 after two steps and restarts from its checkpoint."""
    import ray
    from ray.util.placement_group import placement_group, remove_placement_group

    from blacksoil.learning.basemodel import ensure_hf_copy
    from blacksoil.learning.config import LearningConfig
    from blacksoil.learning.worker import fixed_samples

    info = ensure_hf_copy(s.home)
    from blacksoil.learning.basemodel import load_tokenizer

    samples = tuple(fixed_samples(load_tokenizer(info)))
    cfg = LearningConfig(batch_size=2, max_seq_len=64, checkpoint_every=1, lora_layers=2)
    pg = placement_group([{"CPU": 1, f"blacksoil_host_{n}": 0.001} for n in NODES], strategy="STRICT_SPREAD")
    gang = RayGang("bench", LearnerSpec(info, cfg, samples, steps), run_dir, pg, rank_resources={"CPU": 1})
    try:
        gang.start()
        deadline = time.monotonic() + 300
        while len(read_steps(run_dir)) < 2:
            if gang.poll() != "running" or time.monotonic() > deadline:
                raise ConfigError("the learner gang never took two steps; see the Ray worker logs")
            time.sleep(0.05)
        before = len(read_steps(run_dir))
        t_kill = time.monotonic()
        ray.kill(gang.actors[1])
        resume_s = None
        while gang.poll() in ("running", "restarted"):
            if resume_s is None and len(read_steps(run_dir)) > before:
                resume_s = time.monotonic() - t_kill
            time.sleep(0.05)
        results = gang.results
    finally:
        gang.stop(checkpoint=False)
        remove_placement_group(pg)
    logged = [int(e["step"]) for e in read_steps(run_dir)]
    return {"lost_steps": len(set(range(1, steps + 1)) - set(logged)), "repeated_steps": len(logged) - len(set(logged)),
            "resume_s": resume_s, "restarts": gang.restarts, "final_step": results[0]["step"] if results else None,
            "ranks_in_sync": bool(results) and results[0]["digest"] == results[1]["digest"]}


def run(s: Settings, work: Path, quick: bool = True) -> tuple[list[str], list[list[Any]], dict[str, Any]]:
    """Every phase on a fresh local cluster: (table headers, rows, the result JSON)."""
    sessions, turns = (8, 4) if quick else (16, 6)
    t0 = time.monotonic()
    with local_cluster() as address:
        up_s = time.monotonic() - t0
        arms = {name: routing_arm(s, address, policy, sessions, turns)
                for name, policy in (("round_robin", "fcfs"), ("affinity", "agent"))}
        kill = replica_kill(s, address)
        learn = learner_kill(s, work / "gang")
    rr, aff = arms["round_robin"], arms["affinity"]
    speedup = rr["ttft_p99_s"] / aff["ttft_p99_s"] if rr["ttft_p99_s"] and aff["ttft_p99_s"] else None
    result: dict[str, Any] = {
        "ttft_p99_speedup_vs_round_robin": _r(speedup),
        "prefix_hit_ratio": {k: _r(v["prefix_hit_ratio"]) for k, v in arms.items()},
        "ttft_p99_s": {k: _r(v["ttft_p99_s"]) for k, v in arms.items()},
        "ttft_p50_s": {k: _r(v["ttft_p50_s"]) for k, v in arms.items()},
        "followup_ttft_p99_s": {k: _r(v["followup_ttft_p99_s"]) for k, v in arms.items()},
        "routing_failed": {k: v["failed"] for k, v in arms.items()},
        "sessions": sessions, "turns": turns,
        "failed_after_replica_kill": kill["failed_after_replica_kill"], "inflight_failed": kill["inflight_failed"],
        "scale_up_s": _r(kill["scale_up_s"]),
        "lost_steps": learn["lost_steps"], "repeated_steps": learn["repeated_steps"], "resume_s": _r(learn["resume_s"]),
        "ranks_in_sync": learn["ranks_in_sync"],
        "ddp_bytes_ratio_priority_vs_fp32": None,  # not measured by this bench yet (see notes)
        "cluster_up_s": _r(up_s), "wall_s": _r(time.monotonic() - t0),
    }
    headers = ["phase", "measure", "value"]
    rows: list[list[Any]] = [["cluster", "up (s)", _r(up_s)]]
    for k, v in arms.items():
        rows += [[f"routing {k}", "TTFT p50 / p99 (s)", f"{_r(v['ttft_p50_s'])} / {_r(v['ttft_p99_s'])}"],
                 [f"routing {k}", "follow-up turns TTFT p99 (s)", _r(v["followup_ttft_p99_s"])],
                 [f"routing {k}", "prefix hit ratio", _r(v["prefix_hit_ratio"])],
                 [f"routing {k}", "failed / requests", f"{v['failed']} / {v['requests']}"]]
    rows += [["routing", "TTFT p99 speedup vs round robin", _r(speedup)],
             ["replica kill", "in-flight streams failed", f"{kill['inflight_failed']} / {kill['inflight']}"],
             ["replica kill", "requests after the kill failed",
              f"{kill['failed_after_replica_kill']} / {kill['after']}"],
             ["scale up", "start to first answer (s)", _r(kill["scale_up_s"])],
             ["learner kill", "lost / repeated steps", f"{learn['lost_steps']} / {learn['repeated_steps']}"],
             ["learner kill", "kill to next step (s)", _r(learn["resume_s"])],
             ["learner kill", "ranks bit-identical after", learn["ranks_in_sync"]]]
    return headers, rows, result


def _r(x: float | None, nd: int = 3) -> float | None:
    return None if x is None else round(float(x), nd)
