"""Serving replicas as Ray actors running the real embedded engine, registered with a real gateway."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from openai import OpenAI
from tests.scheduling.conftest import node_with

from blacksoil.config import load_settings
from blacksoil.errors import ConfigError
from blacksoil.serving.config import ServingConfig
from blacksoil.serving.launch import GatewayHandle, gateway
from blacksoil.serving.models import ModelRegistry
from blacksoil.serving.pool import ReplicaPool

ray = pytest.importorskip("ray")


from blacksoil.scheduling.backends.ray_serving import RayReplicas  # noqa: E402
from blacksoil.scheduling.backends.ray_vllm import engine_for  # noqa: E402


@pytest.fixture(scope="module")
def ray_gw(ray_cluster: Any) -> Iterator[tuple[GatewayHandle, RayReplicas]]:
    """A gateway whose replicas are Ray actors on nodes n1 and n2 (its own start-up engine is stopped)."""
    cfg = ServingConfig.model_validate({"threads": 1, "slots": 2, "concurrency": 2, "ctx": 2048,
                                        "default_max_tokens": 8, "queue_timeout_s": 60.0})
    with gateway(load_settings(), serving=cfg) as gw:
        replicas = RayReplicas(gw.pool)
        try:
            local = [i.name for i in gw.pool.info()]
            t = time.monotonic()
            names = [replicas.start({"num_cpus": 1, "resources": {f"blacksoil_host_{n}": 0.001}}) for n in ("n1", "n2")]
            print(f"two replica actors serving after {time.monotonic() - t:.1f}s")
            for n in local:
                gw.pool.stop_replica(n)
            assert sorted(i.name for i in gw.pool.info()) == sorted(names)
            yield gw, replicas
        finally:
            replicas.close()


def test_replica_actor_answers_a_chat_through_the_gateway(ray_gw: tuple[GatewayHandle, RayReplicas]) -> None:
    gw, _ = ray_gw
    client = OpenAI(base_url=gw.openai_base_url, api_key="unused")
    r = client.chat.completions.create(model=gw.model, messages=[{"role": "user", "content": "Say hi."}],
                                       max_tokens=4)
    assert r.choices[0].message.content


def test_replica_runs_on_its_ray_node_with_that_nodes_cores(ray_gw: tuple[GatewayHandle, RayReplicas]) -> None:
    _, replicas = ray_gw
    eps = [ray.get(replicas.actor_of(name).endpoint.remote()) for name in replicas.members]
    assert {(ep["node"], ep["threads"]) for ep in eps} == {(node_with(ray, f"blacksoil_host_{n}"), 1)
                                                           for n in ("n1", "n2")}


def test_pool_lists_the_actor_as_a_remote_engine(ray_gw: tuple[GatewayHandle, RayReplicas]) -> None:
    gw, _ = ray_gw
    assert [(i.kind, i.status) for i in gw.pool.info()] == [("llamacpp_remote", "ready")] * 2


def test_killed_replica_actor_ends_its_stream_with_an_error_and_later_requests_succeed(
        ray_gw: tuple[GatewayHandle, RayReplicas]) -> None:
    gw, replicas = ray_gw
    body = {"model": gw.model, "messages": [{"role": "user", "content": "Count from one to one hundred."}],
            "max_tokens": 400, "stream": True}
    events: list[str] = []
    with httpx.Client(timeout=60) as http, http.stream("POST", gw.openai_base_url + "/chat/completions",
                                                       json=body) as r:
        lines = r.iter_lines()
        for line in lines:
            if line.startswith("data:"):
                events.append(line)
                break
        (busy,) = [i.name for i in gw.pool.info() if i.inflight > 0]
        t = time.monotonic()
        ray.kill(replicas.actor_of(busy))
        events += [line for line in lines if line.startswith("data:")]
    deadline = time.monotonic() + 30
    while busy not in replicas.lost:
        assert time.monotonic() < deadline, "the dead replica was never removed"
        time.sleep(0.02)
    print(f"dead replica out of the pool {time.monotonic() - t:.2f}s after the kill")
    assert '"error"' in events[-2] and events[-1] == "data: [DONE]"
    assert busy not in [i.name for i in gw.pool.info()]
    client = OpenAI(base_url=gw.openai_base_url, api_key="unused")
    answers = [client.chat.completions.create(model=gw.model, messages=[{"role": "user", "content": f"Hi {k}"}],
                                              max_tokens=2).choices[0].finish_reason for k in range(3)]
    assert all(a in ("stop", "length") for a in answers)  # every request after the kill answered


def test_a_replica_actor_picks_vllm_with_a_gpu_and_llamacpp_without() -> None:
    assert (engine_for([0]), engine_for([])) == ("vllm", "llamacpp")


def test_a_replica_on_a_gpu_node_runs_vllm_and_names_the_missing_vllm_environment(ray_cluster: Any,
                                                                                    tmp_path: Path) -> None:
    # Not a GPU: a Ray node that declares one, which is what the selection reads. No vLLM environment there.
    cfg = ServingConfig.model_validate({"threads": 1, "slots": 2, "ctx": 2048,
                                        "vllm": {"python": str(tmp_path / "no-venv-vllm" / "bin" / "python")}})
    entry = ModelRegistry(load_settings().home).resolve(None)
    pool = ReplicaPool(cfg, entry, entry.name)
    node = ray_cluster.add_node(num_cpus=0, num_gpus=1, object_store_memory=80_000_000)
    replicas = RayReplicas(pool)
    try:
        ray_cluster.wait_for_nodes()
        with pytest.raises(ConfigError) as err:
            replicas.start({"num_cpus": 0, "num_gpus": 1})
    finally:
        replicas.close()
        ray_cluster.remove_node(node)
    assert err.value.message.startswith(f"the vllm serving replica on Ray node {node.node_id} could not start")
    assert "the vLLM environment is missing" in err.value.message and "make vllm-env" in err.value.message
    assert pool.info() == []  # nothing was registered
