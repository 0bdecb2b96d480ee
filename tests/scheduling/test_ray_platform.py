"""`blacksoil up --backend ray`: the gateway hands its traffic to engine actors spread over the Ray nodes."""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from openai import OpenAI

from blacksoil.config import Settings, load_settings
from blacksoil.distributed import free_port
from blacksoil.errors import ConfigError
from blacksoil.learning.adapters import AdapterStore
from blacksoil.learning.basemodel import info_from_gguf
from blacksoil.learning.randomlora import write_random_peft
from blacksoil.learning.swap import HotSwapper, served_counts
from blacksoil.scheduling.backends.ray_platform import policy_replicas, ray_replicas, replica_backend
from blacksoil.scheduling.config import SchedulingConfig
from blacksoil.scheduling.state import Action
from blacksoil.serving.config import ServingConfig
from blacksoil.serving.launch import GatewayHandle, gateway

ray = pytest.importorskip("ray")


def test_bad_ray_address_is_a_clear_error_before_anything_starts() -> None:
    with pytest.raises(ConfigError, match=r"'http://head' is not a Ray cluster address; pass `auto`"):
        replica_backend("ray", "http://head", SchedulingConfig())


def test_kubernetes_is_refused_by_up_with_the_fix() -> None:
    with pytest.raises(ConfigError, match="pass --backend local or --backend ray"):
        replica_backend("kubernetes", None, SchedulingConfig())


def test_up_with_a_bad_address_exits_2_naming_it() -> None:
    res = subprocess.run([sys.executable, "-m", "blacksoil.cli", "up", "--backend", "ray", "--address", "head:port"],
                         capture_output=True, text=True, timeout=120)
    assert (res.returncode, "'head:port' is not a Ray cluster address" in res.stderr) == (2, True), res.stderr


def test_replicas_spread_over_the_ray_nodes_serve_the_gateway(ray_cluster: Any) -> None:
    cfg = ServingConfig.model_validate({"threads": 1, "slots": 2, "concurrency": 2, "ctx": 2048,
                                        "default_max_tokens": 4, "queue_timeout_s": 60.0})
    with gateway(load_settings(), serving=cfg) as gw:
        with ray_replicas(gw.pool, ray_cluster.address, 2) as members:
            nodes = {members.node_of(n) for n in members.members}
            kinds = sorted(i.kind for i in gw.pool.info())
            client = OpenAI(base_url=gw.openai_base_url, api_key="unused")
            r = client.chat.completions.create(model=gw.model, messages=[{"role": "user", "content": "Hi"}])
        left = gw.pool.info()
    assert len(nodes) == 2  # SPREAD: one replica per worker node
    assert kinds == ["llamacpp_remote", "llamacpp_remote"]  # the gateway's own engine handed over and stopped
    assert r.choices[0].finish_reason in ("stop", "length")
    assert left == []  # on exit the actors are gone from the pool


# ---- `up --backend ray`: the unified policy scales replica actors from the gateway's demand ----

FAST = SchedulingConfig(step_s=0.3, replica_cold_start_s=0.0, restart_s=0.0, kill_grace_s=0.0,
                        hpa_scale_down_window_s=1.0, headroom_sigmas=0.0, min_headroom=0.0, lend_horizon_s=0.3)


def _settings(**scheduling: Any) -> Settings:
    s = load_settings()
    serving = ServingConfig.model_validate({"threads": 1, "slots": 2, "concurrency": 2, "ctx": 2048,
                                            "default_max_tokens": 4, "queue_timeout_s": 120.0})
    return s.model_copy(update={"serving": serving, "scheduling": s.scheduling.model_copy(update=scheduling)})


def _until(cond: Callable[[], bool], what: str, timeout: float = 90.0) -> float:
    """Seconds until `cond()` holds (polled every 50 ms); fails after `timeout`."""
    t0 = time.monotonic()
    while not cond():
        assert time.monotonic() - t0 < timeout, f"{what} not reached in {timeout} s"
        time.sleep(0.05)
    return time.monotonic() - t0


def _streams(gw: GatewayHandle, n: int, max_tokens: int, results: list[bool],
             until: threading.Event) -> list[threading.Thread]:
    """`n` concurrent streamed chats (new sessions) in threads, each started again when it ends until `until` is set
    (so the demand lasts however long a new replica takes to start); each appends whether it ended without an error."""
    body = {"model": gw.model, "messages": [{"role": "user", "content": "Count from one to one hundred."}],
            "max_tokens": max_tokens, "stream": True}

    def one(k: int) -> None:
        for turn in itertools.count():
            with httpx.Client(timeout=120) as c, c.stream("POST", gw.openai_base_url + "/chat/completions", json=body,
                                                          headers={"X-Session-Id": f"spike{k}-{turn}"}) as r:
                lines = [line for line in r.iter_lines() if line.startswith("data:")]
            results.append(r.status_code == 200 and not any('"error"' in line[:20] for line in lines)
                           and lines[-1] == "data: [DONE]")
            if until.is_set():
                return

    threads = [threading.Thread(target=one, args=(k,), daemon=True) for k in range(n)]
    for th in threads:
        th.start()
    return threads


def test_up_serves_from_policy_scaled_actors_with_no_local_engine(ray_cluster: Any) -> None:
    s = _settings()
    with gateway(s, serving=s.serving, engines=False) as gw:
        before = httpx.get(gw.url + "/health").status_code
        with policy_replicas(gw, s, ray_cluster.address, cfg=FAST) as backend:
            after = httpx.get(gw.url + "/health").status_code
            kinds = [i.kind for i in gw.pool.info()]
            (first,) = backend.serving.nodes()

            results: list[bool] = []
            served = threading.Event()
            t_spike = time.monotonic()
            threads = _streams(gw, 6, 48, results, served)  # 6 streams on 2 slots: demand = 3 replicas' worth
            _until(lambda: any(i.name != first and i.inflight > 0 for i in gw.pool.info()), "a second replica serving")
            scale_up_s = time.monotonic() - t_spike
            served.set()
            nodes = set(backend.serving.nodes().values())
            for th in threads:
                th.join()
            scale_down_s = _until(lambda: len(gw.pool.info()) == 1, "demand fallen: one replica drained and stopped")
            ups = [d for _, d in backend.state.log if d.action is Action.SCALE_UP and d.reason != "replicas gone"]
    print(f"spike to a new replica serving {scale_up_s:.1f}s; streams done to scaled down {scale_down_s:.1f}s")
    assert (before, after) == (503, 200)  # not ready until the first actor serves
    assert kinds == ["llamacpp_remote"]  # no local engine was ever started
    assert len(nodes) == 2  # the new replica went to the node with a free CPU
    assert len(ups) == 2 and "demand" in ups[1].reason  # the policy's decision, from the gateway's demand
    assert (len(results) >= 6, all(results)) == (True, True)  # the scale-down drained: every stream finished


def test_hot_swap_starts_its_green_replica_as_an_actor_on_another_node(ray_cluster: Any, tmp_path: Path) -> None:
    s = _settings(ray_shared_dir=str(tmp_path / "shared"))
    info = info_from_gguf()
    with gateway(s, serving=s.serving, engines=False) as gw, \
            policy_replicas(gw, s, ray_cluster.address, cfg=FAST) as backend:
        adapter = AdapterStore(s.home, gw.model).publish(write_random_peft(tmp_path / "peft", info, b_std=0.002),
                                                         info)
        (blue,) = backend.serving.nodes().items()
        blue_actor = backend.serving.actor_of(blue[0])
        report = HotSwapper(gw, canary=True, canary_requests=2).swap(adapter)
        (green,) = backend.serving.nodes().items()
        health = httpx.get(gw.url + "/health").json()
        r = OpenAI(base_url=gw.openai_base_url, api_key="unused").chat.completions.create(
            model=gw.model, messages=[{"role": "user", "content": "Hi"}], max_tokens=2)
        served = served_counts(gw.url)[0].get(adapter.version, 0.0)
        _until(lambda: backend.replicas == {backend.node_ids.index(green[1]): [green[0]]}, "the policy adopts green")
    assert (report.ok, report.rolled_back) == (True, False)
    assert green[1] != blue[1]  # green ran on the other node while blue still served
    assert health["adapter_versions"] == [adapter.version]
    assert r.model == gw.model and served >= 3  # canary, verify probe and this request served by the new version
    assert (tmp_path / "shared" / "adapters" / gw.model / f"{adapter.version}.gguf").is_file()  # what nodes read
    with pytest.raises(ray.exceptions.RayActorError):  # blue's actor ended with its replica
        ray.get(blue_actor.endpoint.remote(), timeout=30)


def test_blacksoil_up_on_ray_serves_through_actors_and_stops_them(ray_cluster: Any) -> None:
    port = free_port()
    env = os.environ | {"BLACKSOIL_SERVING__THREADS": "1", "BLACKSOIL_SERVING__SLOTS": "2",
                        "BLACKSOIL_SERVING__CTX": "2048", "BLACKSOIL_PLATFORM__CONSOLE": "false"}
    proc = subprocess.Popen([sys.executable, "-m", "blacksoil.cli", "up", "--backend", "ray", "--address",
                             ray_cluster.address, "--port", str(port), "--no-learner"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        _until(lambda: _status(url + "/health") == 200 or proc.poll() is not None, "`blacksoil up` serving")
        health = httpx.get(url + "/health").json()
        r = OpenAI(base_url=url + "/v1", api_key="unused").chat.completions.create(
            model=health["model"], messages=[{"role": "user", "content": "Hi"}], max_tokens=2)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert [i["kind"] for i in health["replicas"]] == ["llamacpp_remote"], err  # an actor, no local engine
    assert r.choices[0].finish_reason in ("stop", "length")
    assert proc.returncode == 0, err
    _until(lambda: ray.available_resources().get("CPU", 0) == 2, "the replica actor's CPU released", timeout=30)


def _status(url: str) -> int:
    try:
        return httpx.get(url, timeout=2).status_code
    except httpx.HTTPError:
        return 0


def test_a_stopped_worker_node_is_survived_and_its_replica_replaced_on_the_other(ray_cluster: Any) -> None:
    s = _settings()
    with gateway(s, serving=s.serving, engines=False) as gw, \
            policy_replicas(gw, s, ray_cluster.address, cfg=FAST) as backend:
        ((name, node_id),) = backend.serving.nodes().items()
        (node,) = [n for n in ray_cluster.worker_nodes if n.node_id == node_id]
        (res,) = [n["Resources"] for n in ray.nodes() if n["NodeID"] == node_id]
        host = backend.node_ids.index(node_id)
        outcomes: list[int] = []
        stop = threading.Event()

        def traffic() -> None:  # requests started after the node stops, one after the other
            with httpx.Client(timeout=120) as c:
                while not stop.is_set():
                    outcomes.append(c.post(gw.openai_base_url + "/chat/completions", json={
                        "model": gw.model, "messages": [{"role": "user", "content": "Hi"}],
                        "max_tokens": 2}).status_code)
        try:
            ray_cluster.remove_node(node)  # `ray stop` on that node: its raylet and workers end
            sender = threading.Thread(target=traffic)
            sender.start()
            replaced_s = _until(lambda: list(backend.serving.nodes().values()) not in ([], [node_id]),
                                "a replacement replica")
            _until(lambda: len(outcomes) >= 3, "requests answered after the replacement")
            stop.set()
            sender.join()
            after = backend.serving.nodes()
            down = set(backend.down)
        finally:
            stop.set()
            ray_cluster.add_node(num_cpus=1, object_store_memory=80_000_000, resources={
                k: v for k, v in res.items() if k not in ("CPU", "memory", "object_store_memory")
                and not k.startswith("node:")})  # the session's cluster keeps two worker nodes
            ray_cluster.wait_for_nodes()
        rejoined = _until(lambda: not backend.down, "the stopped host joining again")
    print(f"the host offered room again {rejoined:.1f}s after a node with its tag rejoined")
    print(f"replacement serving {replaced_s:.1f}s after the node stopped; {len(outcomes)} requests after it")
    assert name in backend.serving.lost  # its replica left the pool on Ray's death notice
    assert list(after.values()) != [node_id] and len(after) == 1  # replaced on the remaining node
    assert down == {host}  # the policy placed nothing on the stopped node
    assert set(outcomes) == {200}  # no request started after the stop failed
