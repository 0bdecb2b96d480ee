"""The kopf operator against KMock (tests/scheduling/k8s_kit.py): gangs in one topology domain, serving replicas
counted by the unified policy from a gateway's /metrics (a real HTTP server rendering the gateway's own metrics),
serving growth preempting learning through evictions, agent groups on one node."""

from __future__ import annotations

from typing import Any

import pytest

from .k8s_kit import (
    MetricsServer,
    create,
    kc,
    node_of,
    objects,
    pods_of,
    running_operator,
    setup_cluster,
    status_of,
    steady_replicas,
    until,
)


@pytest.fixture
def metrics() -> Any:
    server = MetricsServer()
    yield server
    server.close()


async def test_operator_places_preempts_and_colocates(kmock: Any, monkeypatch: pytest.MonkeyPatch,
                                                      metrics: MetricsServer) -> None:
    evicted = setup_cluster(kmock, monkeypatch, nodes=4, per_node=8)  # 32 accelerators, two racks in one pod
    async with running_operator():
        # A 16-accelerator gang lands on two nodes of one rack, as learning-priority pods.
        await create(kmock, "learningjobs", "train", {"size": 16, "priority": 100, "image": "learner:1",
                                                      "checkpointSeconds": 45})
        await until(lambda: len(pods_of(kmock, "train")) == 2, what="the gang's 2 pods")
        train = list(pods_of(kmock, "train").values())
        assert len({int(node_of(p)[-1]) // 2 for p in train}) == 1
        assert all(p["spec"]["priorityClassName"] == "blacksoil-learning" for p in train)
        assert sum(int(p["spec"]["containers"][0]["resources"]["requests"][kc.ACCEL]) for p in train) == 16
        await until(lambda: status_of(kmock, "learningjobs", "train").get("phase") == "Running")

        # 9 requests on one-slot replicas: the policy's count for that demand fits the 16 free, no preemption.
        metrics.load(running=9)
        await create(kmock, "servingdeployments", "chat", {"minReplicas": 1, "maxReplicas": 24, "slots": 1,
                                                           "image": "engine:1", "gatewayUrl": metrics.url})
        want = steady_replicas(9.0)
        await until(lambda: len(pods_of(kmock, "chat")) == want, what=f"{want} serving pods")
        await until(lambda: status_of(kmock, "servingdeployments", "chat").get("desiredReplicas") == want)
        assert status_of(kmock, "servingdeployments", "chat")["demand"] == 9.0
        assert not evicted

        # Demand far past 24 replicas: maxReplicas caps it; the learning gang is asked to checkpoint, then evicted.
        metrics.load(running=60, waiting=40)
        await until(lambda: len(pods_of(kmock, "chat")) == 24, what="24 serving pods")
        assert sorted(evicted) == ["train-0", "train-1"]
        job = objects(kmock, "learningjobs")["train"]
        assert kc.CHECKPOINT_ANNOTATION in job["metadata"]["annotations"]
        assert job["status"]["phase"] in ("Preempted", "Pending")
        assert all(p["spec"]["priorityClassName"] == "blacksoil-serving" for p in pods_of(kmock, "chat").values())

        # An agent group of three members (2 + 2 + 2 accelerators) shares one node.
        await create(kmock, "agentgroups", "crew", {"members": [{"name": m, "accelerators": 2, "image": "agent:1"}
                                                                for m in ("planner", "coder", "critic")]})
        await until(lambda: len(pods_of(kmock, "crew")) == 3, what="the crew's 3 pods")
        crew = list(pods_of(kmock, "crew").values())
        assert len({node_of(p) for p in crew}) == 1
        assert all(p["spec"]["affinity"]["podAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"][0]
                   ["topologyKey"] == kc.HOST_LABEL for p in crew)


async def test_replicas_follow_demand_within_bounds(kmock: Any, monkeypatch: pytest.MonkeyPatch,
                                                    metrics: MetricsServer) -> None:
    setup_cluster(kmock, monkeypatch, nodes=2, per_node=8)
    async with running_operator():
        await create(kmock, "servingdeployments", "web", {"minReplicas": 2, "maxReplicas": 6, "slots": 2,
                                                          "image": "engine:1", "gatewayUrl": metrics.url})
        await until(lambda: status_of(kmock, "servingdeployments", "web").get("demand") == 0.0)
        assert len(pods_of(kmock, "web")) == 2  # no demand: minReplicas

        metrics.load(running=4, waiting=2)  # 6 requests over 2 slots a replica: 3 replicas' worth
        await until(lambda: len(pods_of(kmock, "web")) == steady_replicas(3.0), what="the steady count for 3")

        metrics.load(running=60, waiting=40)
        await until(lambda: len(pods_of(kmock, "web")) == 6, what="maxReplicas")

        metrics.load(running=0)
        await until(lambda: len(pods_of(kmock, "web")) == 2, what="back to minReplicas")

        # The gateway stops answering: the replicas stay as they are, and the status says why.
        metrics.load(running=4, waiting=2)
        await until(lambda: len(pods_of(kmock, "web")) == steady_replicas(3.0))
        metrics.close()
        await until(lambda: "demand unknown" in status_of(kmock, "servingdeployments", "web").get("reason", ""),
                    what="the reason naming the unreadable demand")
        assert len(pods_of(kmock, "web")) == steady_replicas(3.0)
        assert "demand" not in status_of(kmock, "servingdeployments", "web")  # no reading (a merge patch's null)


async def test_serving_pods_run_the_engine_with_the_deployment_key(kmock: Any, monkeypatch: pytest.MonkeyPatch,
                                                                   metrics: MetricsServer) -> None:
    setup_cluster(kmock, monkeypatch, nodes=1, per_node=2)
    async with running_operator():
        await create(kmock, "servingdeployments", "chat", {"minReplicas": 1, "maxReplicas": 2, "port": 9001,
                                                           "prefillChunk": 64, "image": "engine:1",
                                                           "gatewayUrl": metrics.url})
        await until(lambda: len(pods_of(kmock, "chat")) == 1)
        (pod,) = pods_of(kmock, "chat").values()
        container = pod["spec"]["containers"][0]
        env = {e["name"]: e for e in container["env"]}
        assert container["command"][-1] == "blacksoil.scheduling.backends.k8s_engine"
        assert env["BLACKSOIL_ENGINE_PORT"]["value"] == "9001"
        assert env["BLACKSOIL_ENGINE_PREFILL_CHUNK"]["value"] == "64"
        assert env["BLACKSOIL_ENGINE_API_KEY"]["valueFrom"]["secretKeyRef"]["name"] in objects(kmock, "secrets")
        assert container["readinessProbe"]["httpGet"]["port"] == 9001
