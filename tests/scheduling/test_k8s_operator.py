"""The kopf operator against KMock (the Kubernetes API emulator kopf's own tests use), in one event loop.

KMock keeps objects in memory but has no Eviction subresource: the test adds a reaction that deletes the
pod as the API server does (after PodDisruptionBudget checks, which this test does not model).
"""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import Callable
from typing import Any

import aiohttp
import pytest

os.environ.setdefault("BLACKSOIL_OPERATOR_REGISTER", "0")  # the test registers on its own registry
kopf = pytest.importorskip("kopf")
kmock_mod = pytest.importorskip("kmock")

from blacksoil.scheduling.backends import k8s_operator as op  # noqa: E402

CRDS = {"servingdeployments": "ServingDeployment", "learningjobs": "LearningJob", "agentgroups": "AgentGroup"}
VERBS = {"list", "watch", "get", "patch", "create", "delete", "update"}


def _pods(kmock: Any) -> dict[str, dict]:
    out = {}
    for key in list(kmock.objects):
        res, _ns, name = key
        obj = kmock.objects[key]
        if res.plural == "pods" and not obj.deleted:
            out[name] = obj.raw
    return out


def _obj(kmock: Any, plural: str, name: str) -> dict:
    for key in list(kmock.objects):
        if key[0].plural == plural and key[2] == name:
            return kmock.objects[key].raw
    raise KeyError(name)


async def _until(cond: Callable[[], bool], timeout: float = 20.0) -> None:
    end = asyncio.get_running_loop().time() + timeout
    while not cond():
        if asyncio.get_running_loop().time() > end:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.1)


async def test_operator_places_preempts_and_colocates(kmock: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BLACKSOIL_K8S_SERVER", str(kmock.url).rstrip("/"))
    info = kmock_mod.ResourceInfo
    kmock.resources["v1/nodes"] = info(kind="Node", namespaced=False, verbs=VERBS)
    kmock.resources["v1/pods"] = info(kind="Pod", namespaced=True, verbs=VERBS, subresources={"eviction"})
    kmock.resources["v1/namespaces"] = info(kind="Namespace", namespaced=False, verbs=VERBS)
    for plural, kind in CRDS.items():
        kmock.resources[f"blacksoil.dev/v1alpha1/{plural}"] = info(kind=kind, namespaced=True, verbs=VERBS,
                                                                   subresources={"status"})
    evicted: list[str] = []

    def evict(request: Any) -> dict:
        name = request.name
        for key in list(kmock.objects):
            if key[0].plural == "pods" and key[2] == name and not kmock.objects[key].deleted:
                kmock.objects[key].delete()
        evicted.append(name)
        return {"apiVersion": "v1", "kind": "Status", "status": "Success"}

    kmock["post", re.compile(r".*/pods/[^/]+/eviction$")] << evict
    for i in range(4):  # 4 nodes × 8 accelerators, two racks in one pod
        kmock.objects["v1/nodes", None, f"node-{i}"] = {
            "apiVersion": "v1", "kind": "Node",
            "metadata": {"name": f"node-{i}", "labels": {op.RACK_LABEL: f"rack-{i // 2}", op.POD_LABEL: "pod-0",
                                                         op.HOST_LABEL: f"node-{i}"}},
            "status": {"allocatable": {op.ACCEL: "8", "cpu": "64"}}}

    registry = kopf.OperatorRegistry()
    op.register(registry)
    stop = asyncio.Event()
    task = asyncio.create_task(kopf.operator(registry=registry, standalone=True, clusterwide=True, stop_flag=stop))
    base = str(kmock.url).rstrip("/") + "/apis/blacksoil.dev/v1alpha1/namespaces/default"

    async def create(plural: str, name: str, spec: dict) -> None:
        body = {"apiVersion": "blacksoil.dev/v1alpha1", "kind": CRDS[plural],
                "metadata": {"name": name, "namespace": "default", "uid": f"uid-{name}", "resourceVersion": "1"},
                "spec": spec}
        async with aiohttp.ClientSession() as s, s.post(f"{base}/{plural}", json=body) as r:
            assert r.status < 300, await r.text()

    async def patch(plural: str, name: str, change: dict) -> None:
        async with aiohttp.ClientSession() as s, s.patch(
                f"{base}/{plural}/{name}", json=change, headers={"Content-Type": "application/merge-patch+json"}) as r:
            assert r.status < 300, await r.text()

    try:
        # A 16-accelerator gang lands on two nodes of one rack, as learning-priority pods.
        await create("learningjobs", "train", {"size": 16, "priority": 100, "image": "learner:1",
                                               "checkpointSeconds": 45})
        await _until(lambda: len([p for p in _pods(kmock) if p.startswith("train-")]) == 2)
        train = [p for n, p in _pods(kmock).items() if n.startswith("train-")]
        hosts = [p["spec"]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
                 ["nodeSelectorTerms"][0]["matchExpressions"][0]["values"][0] for p in train]
        assert {int(h[-1]) // 2 for h in hosts} == {0} or {int(h[-1]) // 2 for h in hosts} == {1}
        assert all(p["spec"]["priorityClassName"] == "blacksoil-learning" for p in train)
        assert sum(int(p["spec"]["containers"][0]["resources"]["requests"][op.ACCEL]) for p in train) == 16
        await _until(lambda: (_obj(kmock, "learningjobs", "train").get("status") or {}).get("phase") == "Running")

        # Serving wants 12 replicas: 16 free is enough, no preemption.
        await create("servingdeployments", "chat", {"replicas": 12, "replicaAccelerators": 1, "image": "engine:1"})
        await _until(lambda: len([p for p in _pods(kmock) if p.startswith("chat-")]) == 12)
        assert not evicted

        # Serving grows to 24: the learning gang is asked to checkpoint, then evicted; serving takes the room.
        await patch("servingdeployments", "chat", {"spec": {"replicas": 24}})
        await _until(lambda: len([p for p in _pods(kmock) if p.startswith("chat-")]) == 24)
        assert sorted(evicted) == sorted(n for n in ("train-0", "train-1"))
        job = _obj(kmock, "learningjobs", "train")
        assert op.CHECKPOINT_ANNOTATION in job["metadata"]["annotations"]
        assert job["status"]["phase"] == "Preempted"
        chat = [p for n, p in _pods(kmock).items() if n.startswith("chat-")]
        assert all(p["spec"]["priorityClassName"] == "blacksoil-serving" for p in chat)

        # An agent group of three members (2 + 2 + 2 accelerators) shares one node.
        await create("agentgroups", "crew", {"members": [{"name": m, "accelerators": 2, "image": "agent:1"}
                                                         for m in ("planner", "coder", "critic")]})
        await _until(lambda: len([p for p in _pods(kmock) if p.startswith("crew-")]) == 3)
        crew = [p for n, p in _pods(kmock).items() if n.startswith("crew-")]
        nodes = {p["spec"]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
                 ["nodeSelectorTerms"][0]["matchExpressions"][0]["values"][0] for p in crew}
        assert len(nodes) == 1
        assert all(p["spec"]["affinity"]["podAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"][0]
                   ["topologyKey"] == op.HOST_LABEL for p in crew)
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=20)
