"""`blacksoil bench cluster --quick`: the Ray backend on a local multi-node Ray cluster, measured.

The bench starts (and stops) a `ray.cluster_utils.Cluster` on this machine: a head with no CPUs and two worker
nodes of 1 CPU each, tagged `blacksoil_host_n1`/`n2`. Phases, one after the other (each node's one core is
either an engine's or a trainer rank's, never both):

1. routing: two engine replica actors behind one gateway, agent sessions of two agents (a shared system prompt
   with tool schemas each, a tool result appended every turn) on warm engines. Arm `round_robin` = the gateway's
   round_robin policy (a plain load balancer), arm `prefix_affinity` = its agent policy (sessions and shared
   prefixes to the replica holding them); ray_routing_bench.py.
2. replica kill: streams in flight on both replicas, one replica actor killed; streams on it end with an error
   event (`inflight_failed`), requests sent after the kill must all answer (`failed_after_replica_kill`).
2b. scale up: `blacksoil up --backend ray`'s serving (a gateway with no engine of its own, replica actors as many as
   the unified policy wants from the gateway's /metrics) at one replica; a burst of streams is the demand spike.
   `scale_up_s` = spike to a new replica actor serving one of them; `scale_down_s` = the burst answered to one
   replica drained and stopped again.
3. learner kill: a two-rank LoRA gang (one rank per node, gloo between them) loses rank 1 after two steps; the
   gang restarts from its last checkpoint (`resume_s` = kill to next step; `lost_steps`, `repeated_steps` from
   rank 0's step log).
4. ddp wire: the same two-rank gang trains once per comm hook (fp32 allreduce, priority, fp16, PowerSGD) on the
   same samples and seed; the kernel's byte counters of the gloo sockets between the ranks give the bytes per step
   (`ddp_bytes_ratio_priority_vs_fp32`) and the losses at the same steps give `ddp_loss_gap` (ray_ddp_bench.py).
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

from blacksoil.config import Settings
from blacksoil.errors import ConfigError
from blacksoil.scheduling.backends import ray_ddp_bench, ray_routing_bench
from blacksoil.scheduling.backends.ray_learning import LearnerSpec, RayGang, read_steps
from blacksoil.scheduling.backends.ray_platform import ray_replicas
from blacksoil.scheduling.backends.ray_routing_bench import stream_turn
from blacksoil.serving.config import ServingConfig

NODES = ("n1", "n2")

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
                outcomes.append(stream_turn(c, url, body, f"long{k}")[1])

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
                hi = {"model": gw.model, "messages": [{"role": "user", "content": f"Hi {k}"}], "max_tokens": 2}
                later.append(stream_turn(c, url, hi, f"after{k}")[1])
        for th in threads:
            th.join()
        removed = victim in members.lost
        answered_s = time.monotonic() - t_kill
    return {"inflight_failed": sum(outcomes), "inflight": len(outcomes), "failed_after_replica_kill": sum(later),
            "after": len(later), "dead_replica_removed": removed, "kill_to_all_answered_s": answered_s}


def scale_up(s: Settings, address: str, streams: int = 6) -> dict[str, Any]:
    """The policy's scale-up and scale-down of replica actors, from the gateway's own demand signal."""
    from blacksoil.scheduling.backends.ray_platform import policy_replicas
    from blacksoil.scheduling.config import SchedulingConfig
    from blacksoil.serving.launch import gateway

    cfg = ServingConfig.model_validate({"threads": 1, "slots": 2, "concurrency": 2, "ctx": 2048,
                                        "default_max_tokens": 4, "queue_timeout_s": 120.0})
    s = s.model_copy(update={"serving": cfg})
    # Up's control loop with a 0.5 s step and a 2 s scale-down window (up's default window is 300 s).
    policy = SchedulingConfig(step_s=0.5, replica_cold_start_s=0.0, restart_s=0.0, kill_grace_s=0.0,
                              hpa_scale_down_window_s=2.0, headroom_sigmas=0.0, min_headroom=0.0)
    body = {"model": "", "messages": [{"role": "user", "content": "Count from one to one hundred."}],
            "max_tokens": 48}
    with gateway(s, serving=cfg, engines=False) as gw, policy_replicas(gw, s, address, cfg=policy) as backend:
        (first,) = backend.serving.nodes()
        url = gw.openai_base_url + "/chat/completions"
        errors: list[bool] = []

        def burst(k: int) -> None:
            with httpx.Client(timeout=300) as c:
                errors.append(stream_turn(c, url, body | {"model": gw.model}, f"spike{k}")[1])

        t0 = time.monotonic()
        threads = [threading.Thread(target=burst, args=(k,)) for k in range(streams)]
        for th in threads:
            th.start()
        up_s = None
        while up_s is None and time.monotonic() - t0 < 300:
            if any(i.name != first and i.inflight > 0 for i in gw.pool.info()):
                up_s = time.monotonic() - t0
            time.sleep(0.02)
        for th in threads:
            th.join()
        t1 = time.monotonic()
        down_s = None
        while down_s is None and time.monotonic() - t1 < 120:
            if len(gw.pool.info()) == 1:
                down_s = time.monotonic() - t1
            time.sleep(0.05)
    return {"scale_up_s": up_s, "scale_down_s": down_s, "burst_failed": sum(errors), "burst": len(errors)}


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
        arms = ray_routing_bench.routing_phase(s, address, sessions, turns)
        kill = replica_kill(s, address)
        scale = scale_up(s, address)
        learn = learner_kill(s, work / "gang")
        ddp = ray_ddp_bench.ddp_phase(s.home, NODES, steps=16 if quick else 28)
    result: dict[str, Any] = {
        **ray_routing_bench.bench_keys(arms),
        "sessions": sessions, "turns": turns,
        "failed_after_replica_kill": kill["failed_after_replica_kill"], "inflight_failed": kill["inflight_failed"],
        "scale_up_s": _r(scale["scale_up_s"]), "scale_down_s": _r(scale["scale_down_s"]),
        "scale_burst_failed": scale["burst_failed"],
        "lost_steps": learn["lost_steps"], "repeated_steps": learn["repeated_steps"], "resume_s": _r(learn["resume_s"]),
        "ranks_in_sync": learn["ranks_in_sync"],
        **ray_ddp_bench.bench_keys(ddp),
        "cluster_up_s": _r(up_s), "wall_s": _r(time.monotonic() - t0),
    }
    headers = ["phase", "measure", "value"]
    rows: list[list[Any]] = [["cluster", "up (s)", _r(up_s)]]
    rows += ray_routing_bench.bench_rows(arms)
    rows += [["replica kill", "in-flight streams failed", f"{kill['inflight_failed']} / {kill['inflight']}"],
             ["replica kill", "requests after the kill failed",
              f"{kill['failed_after_replica_kill']} / {kill['after']}"],
             ["scale up", "demand spike to a new replica serving (s)", _r(scale["scale_up_s"])],
             ["scale down", "burst answered to one replica drained and stopped (s)", _r(scale["scale_down_s"])],
             ["scale up/down", "burst streams failed", f"{scale['burst_failed']} / {scale['burst']}"],
             ["learner kill", "lost / repeated steps", f"{learn['lost_steps']} / {learn['repeated_steps']}"],
             ["learner kill", "kill to next step (s)", _r(learn["resume_s"])],
             ["learner kill", "ranks bit-identical after", learn["ranks_in_sync"]]]
    rows += ray_ddp_bench.bench_rows(ddp)
    return headers, rows, result


def _r(x: float | None, nd: int = 3) -> float | None:
    return None if x is None else round(float(x), nd)
