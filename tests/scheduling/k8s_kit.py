"""The operator on KMock (the Kubernetes API emulator kopf's own tests use), shared by the tests/scheduling/test_k8s_*
modules: the emulated cluster, the operator in the test's event loop, and what a kubelet would do.

KMock keeps objects in memory and merges patches into them; it has no kubelet, scheduler, Eviction subresource,
label selectors or garbage collector. The kit adds an eviction reaction that deletes the pod as the API server does
(after PodDisruptionBudget checks, which these tests do not model), and `mark_ready` stands in for the kubelet.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import math
import os
import re
import threading
from collections.abc import AsyncIterator, Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

os.environ.setdefault("BLACKSOIL_OPERATOR_REGISTER", "0")  # the tests register on their own registry
kopf = pytest.importorskip("kopf")
kmock_mod = pytest.importorskip("kmock")
jsonschema = pytest.importorskip("jsonschema")

from blacksoil.scheduling.backends import k8s_cluster as kc  # noqa: E402
from blacksoil.scheduling.backends import k8s_operator as op  # noqa: E402
from blacksoil.scheduling.config import SchedulingConfig  # noqa: E402
from blacksoil.serving.metrics import GatewayMetrics  # noqa: E402

CRDS = {"servingdeployments": "ServingDeployment", "learningjobs": "LearningJob", "agentgroups": "AgentGroup"}
VERBS = {"list", "watch", "get", "patch", "create", "delete", "update"}
STEP_S = 0.25
"""The operator's control step in these tests (seconds)."""
CFG = SchedulingConfig(replica_cold_start_s=0.0, hpa_scale_down_window_s=0.0, headroom_sigmas=0.0)
"""The policy's settings here: no modelled cold start, no scale-down window, headroom from min_headroom only, so a
steady demand settles on one replica count within a few steps."""


def steady_replicas(demand: float, replica_accelerators: int = 1) -> int:
    """Replicas the unified policy holds for a demand (accelerators at 100 %) that stays put: the demand plus the
    minimum headroom, at the SLO utilization (policy.UnifiedPolicy.desired_replicas with a settled forecast)."""
    return math.ceil(demand * (1 + CFG.min_headroom) / (CFG.slo_max_utilization * replica_accelerators))


def setup_cluster(kmock: Any, monkeypatch: pytest.MonkeyPatch, nodes: int, per_node: int) -> list[str]:
    """Register the resources the operator uses and `nodes` nodes of `per_node` accelerators (2 per rack, one pod);
    returns the names of the pods the API server evicted, in order."""
    monkeypatch.setenv("BLACKSOIL_K8S_SERVER", str(kmock.url).rstrip("/"))
    info = kmock_mod.ResourceInfo
    kmock.resources["v1/nodes"] = info(kind="Node", namespaced=False, verbs=VERBS)
    kmock.resources["v1/pods"] = info(kind="Pod", namespaced=True, verbs=VERBS, subresources={"eviction", "status"})
    kmock.resources["v1/services"] = info(kind="Service", namespaced=True, verbs=VERBS)
    kmock.resources["v1/secrets"] = info(kind="Secret", namespaced=True, verbs=VERBS)
    kmock.resources["v1/namespaces"] = info(kind="Namespace", namespaced=False, verbs=VERBS)
    for plural, kind in CRDS.items():
        kmock.resources[f"blacksoil.dev/v1alpha1/{plural}"] = info(kind=kind, namespaced=True, verbs=VERBS,
                                                                   subresources={"status"})
    evicted: list[str] = []

    def evict(request: Any) -> dict:
        for key in list(kmock.objects):
            if key[0].plural == "pods" and key[2] == request.name and not kmock.objects[key].deleted:
                kmock.objects[key].delete()
        evicted.append(request.name)
        return {"apiVersion": "v1", "kind": "Status", "status": "Success"}

    kmock["post", re.compile(r".*/pods/[^/]+/eviction$")] << evict
    for i in range(nodes):
        kmock.objects["v1/nodes", None, f"node-{i}"] = {
            "apiVersion": "v1", "kind": "Node",
            "metadata": {"name": f"node-{i}", "labels": {kc.RACK_LABEL: f"rack-{i // 2}", kc.POD_LABEL: "pod-0",
                                                         kc.HOST_LABEL: f"node-{i}"}},
            "status": {"allocatable": {kc.ACCEL: str(per_node), "cpu": "64"}}}
    return evicted


@contextlib.asynccontextmanager
async def running_operator(cfg: SchedulingConfig = CFG) -> AsyncIterator[None]:
    """The operator (its handlers on a registry of its own) in this event loop, until the block ends."""
    registry = kopf.OperatorRegistry()
    op.register(registry, cfg, interval_s=STEP_S)
    stop = asyncio.Event()
    task = asyncio.create_task(kopf.operator(registry=registry, standalone=True, clusterwide=True, stop_flag=stop))
    try:
        yield
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=20)


def objects(kmock: Any, plural: str) -> dict[str, dict]:
    """Live objects of one resource, by name."""
    out = {}
    for key in list(kmock.objects):
        if key[0].plural == plural and not kmock.objects[key].deleted:
            out[key[2]] = kmock.objects[key].raw
    return out


def pods_of(kmock: Any, workload: str) -> dict[str, dict]:
    return {n: p for n, p in objects(kmock, "pods").items() if p["metadata"]["labels"][kc.WORKLOAD_LABEL] == workload}


def status_of(kmock: Any, plural: str, name: str) -> dict:
    return objects(kmock, plural).get(name, {}).get("status") or {}


def node_of(pod: dict) -> str:
    return str(pod["spec"]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
               ["nodeSelectorTerms"][0]["matchExpressions"][0]["values"][0])


async def until(cond: Callable[[], bool], timeout: float = 30.0, what: str = "condition") -> None:
    end = asyncio.get_running_loop().time() + timeout
    while not cond():
        if asyncio.get_running_loop().time() > end:
            raise AssertionError(f"{what} not reached in {timeout:.0f} s")
        await asyncio.sleep(0.1)


async def _api(kmock: Any, method: str, path: str, body: dict, ctype: str = "application/json") -> None:
    async with aiohttp.ClientSession() as s, s.request(method, str(kmock.url).rstrip("/") + path, json=body,
                                                       headers={"Content-Type": ctype}) as r:
        assert r.status < 300, await r.text()


@functools.cache
def crd_schemas() -> dict[str, dict]:
    """openAPIV3Schema of each kind in deploy/kubernetes/crds.yaml (what a real API server checks on create)."""
    docs = yaml.safe_load_all((Path(__file__).resolve().parents[2] / "deploy/kubernetes/crds.yaml").read_text())
    return {d["spec"]["names"]["kind"]: d["spec"]["versions"][0]["schema"]["openAPIV3Schema"] for d in docs if d}


async def create(kmock: Any, plural: str, name: str, spec: dict) -> None:
    """Create a custom resource, refused as the API server would when its spec breaks the CRD's schema (KMock does
    not check it)."""
    body = {"apiVersion": "blacksoil.dev/v1alpha1", "kind": CRDS[plural],
            "metadata": {"name": name, "namespace": "default", "uid": f"uid-{name}", "resourceVersion": "1"},
            "spec": spec}
    jsonschema.validate(body, crd_schemas()[CRDS[plural]])
    await _api(kmock, "POST", f"/apis/blacksoil.dev/v1alpha1/namespaces/default/{plural}", body)


async def patch(kmock: Any, plural: str, name: str, change: dict) -> None:
    """A merge patch of a custom resource (what `kubectl patch --type merge` sends)."""
    await _api(kmock, "PATCH", f"/apis/blacksoil.dev/v1alpha1/namespaces/default/{plural}/{name}", change,
               "application/merge-patch+json")


async def mark_ready(kmock: Any, pod: str, ip: str) -> None:
    """What the kubelet reports once a pod runs and passes its readiness probe."""
    await _api(kmock, "PATCH", f"/api/v1/namespaces/default/pods/{pod}/status",
               {"status": {"phase": "Running", "podIP": ip, "conditions": [{"type": "Ready", "status": "True"}]}},
               "application/merge-patch+json")


async def delete_pod(kmock: Any, pod: str) -> None:
    await _api(kmock, "DELETE", f"/api/v1/namespaces/default/pods/{pod}", {})


class MetricsServer:
    """A gateway's /metrics as the operator reads it: the gateway's own GatewayMetrics, on a real HTTP server."""

    def __init__(self) -> None:
        self.metrics = GatewayMetrics()
        metrics = self.metrics

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = metrics.render()
                self.send_response(200 if self.path == "/metrics" else 404)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *_: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True, name="metrics")
        self.thread.start()

    def load(self, running: int, waiting: int = 0) -> None:
        """The requests the gateway shows on engines and in its queue."""
        self.metrics.running.set(running)
        self.metrics.waiting.set(waiting)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
