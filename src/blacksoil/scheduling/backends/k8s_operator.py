"""The Kubernetes backend: a kopf operator reconciling ServingDeployment, LearningJob and AgentGroup to Pods.

Pods carry priority classes, node affinity to the topology domain the shared placement code chose, and
serving growth preempts learning through the Eviction API after asking the job to checkpoint.
Run with `kopf run -A -m blacksoil.scheduling.backends.k8s_operator` (deploy/kubernetes/operator.yaml).
"""

from __future__ import annotations

import datetime as dt
import os
from typing import Any

import kopf
import numpy as np

from blacksoil.scheduling.policy import victim_order
from blacksoil.scheduling.topology import Cluster, Level

GROUP, VERSION = "blacksoil.dev", "v1alpha1"
ACCEL = os.environ.get("BLACKSOIL_ACCELERATOR_RESOURCE", "nvidia.com/gpu")
RACK_LABEL, POD_LABEL = "topology.blacksoil.dev/rack", "topology.blacksoil.dev/pod"
HOST_LABEL = "kubernetes.io/hostname"
WORKLOAD_LABEL, KIND_LABEL = "blacksoil.dev/workload", "blacksoil.dev/kind"
CHECKPOINT_ANNOTATION = "blacksoil.dev/checkpoint-requested"
PRIORITY_CLASS = {"serving": "blacksoil-serving", "agent_group": "blacksoil-agents", "learning": "blacksoil-learning"}


def core_api() -> Any:
    """A CoreV1Api for the API server in BLACKSOIL_K8S_SERVER, else the in-cluster service account."""
    from kubernetes import client, config

    server = os.environ.get("BLACKSOIL_K8S_SERVER")
    if server:
        cfg = client.Configuration()
        cfg.host = server
        return client.CoreV1Api(client.ApiClient(cfg))
    config.load_incluster_config()
    return client.CoreV1Api()


def custom_api() -> Any:
    from kubernetes import client

    return client.CustomObjectsApi(core_api().api_client)


# ---- reading the cluster into the shared model ----

class View:
    """Nodes, their free accelerators and the blacksoil pods on them, as the placement code wants them."""

    def __init__(self, api: Any, namespace: str):
        nodes = sorted(api.list_node().items, key=lambda n: n.metadata.name)
        if not nodes:
            raise kopf.TemporaryError("no nodes are visible yet", delay=5)
        self.names = [n.metadata.name for n in nodes]
        labels = [n.metadata.labels or {} for n in nodes]
        cap = np.array([int((n.status.allocatable or {}).get(ACCEL, 0)) for n in nodes])
        self.cluster = Cluster.from_groups(int(cap.max()), [lb.get(RACK_LABEL, "r0") for lb in labels],
                                           [lb.get(POD_LABEL, "p0") for lb in labels])
        self.pods = [p for p in api.list_namespaced_pod(namespace).items
                     if (p.metadata.labels or {}).get(WORKLOAD_LABEL) and not p.metadata.deletion_timestamp]
        used = np.zeros(len(nodes), dtype=np.int64)
        index = {n: i for i, n in enumerate(self.names)}
        for p in self.pods:
            node = pod_node(p)
            if node in index:
                used[index[node]] += pod_accelerators(p)
        self.free = cap - used
        self.index = index

    def pods_of(self, name: str) -> list[Any]:
        return [p for p in self.pods if p.metadata.labels.get(WORKLOAD_LABEL) == name]


def pod_node(p: Any) -> str | None:
    if p.spec.node_name:
        return str(p.spec.node_name)
    try:
        terms = p.spec.affinity.node_affinity.required_during_scheduling_ignored_during_execution.node_selector_terms
        return str(terms[0].match_expressions[0].values[0])
    except (AttributeError, IndexError, TypeError):
        return None


def pod_accelerators(p: Any) -> int:
    return sum(int((c.resources.requests or {}).get(ACCEL, 0)) for c in p.spec.containers if c.resources)


def pod_manifest(owner: dict[str, Any], kind: str, index: int, node: str, accelerators: int,
                 template: dict[str, Any], colocate_with: str | None = None) -> dict[str, Any]:
    """One Pod pinned to `node` by required node affinity, with the kind's priority class and owner reference."""
    name = owner["metadata"]["name"]
    container = {"name": "main", "image": template.get("image", "busybox"), "command": template.get("command"),
                 "env": [{"name": "BLACKSOIL_WORKLOAD", "value": name}],
                 "resources": {"requests": {ACCEL: str(accelerators)}, "limits": {ACCEL: str(accelerators)}}}
    affinity: dict[str, Any] = {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
        "nodeSelectorTerms": [{"matchExpressions": [{"key": HOST_LABEL, "operator": "In", "values": [node]}]}]}}}
    if colocate_with:
        affinity["podAffinity"] = {"requiredDuringSchedulingIgnoredDuringExecution": [{
            "labelSelector": {"matchLabels": {WORKLOAD_LABEL: colocate_with}}, "topologyKey": HOST_LABEL}]}
    return {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": f"{name}-{index}", "namespace": owner["metadata"]["namespace"],
                     "labels": {WORKLOAD_LABEL: name, KIND_LABEL: kind},
                     "ownerReferences": [{"apiVersion": f"{GROUP}/{VERSION}", "kind": owner["kind"], "name": name,
                                          "uid": owner["metadata"].get("uid", ""), "controller": True}]},
        "spec": {"priorityClassName": template.get("priorityClassName", PRIORITY_CLASS[kind]),
                 "restartPolicy": "Never" if kind == "learning" else "Always",
                 "terminationGracePeriodSeconds": int(template.get("checkpointSeconds", 30)),
                 "affinity": affinity, "containers": [{k: v for k, v in container.items() if v is not None}]},
    }


# ---- reconcilers (plain functions; kopf handlers below only wire them) ----

def place_learning_job(body: dict[str, Any], api: Any) -> dict[str, Any]:
    """Place a LearningJob's gang in the smallest topology domain (at most a pod), elastic down to minSize."""
    spec, meta = body["spec"], body["metadata"]
    view = View(api, meta["namespace"])
    if view.pods_of(meta["name"]):
        return {"phase": "Running"}
    p = None
    for size in dict.fromkeys([int(spec["size"]), int(spec.get("minSize", spec["size"]))]):
        p = view.cluster.can_place(view.free, size, Level.POD)
        if p is not None:
            break
    if p is None:
        return {"phase": "Pending", "reason": f"no pod-level topology domain has {spec.get('minSize', spec['size'])} "
                                              f"free {ACCEL}; waiting for capacity"}
    for k, (n, c) in enumerate(sorted(p.nodes.items())):
        api.create_namespaced_pod(meta["namespace"], pod_manifest(body, "learning", k, view.names[n], c, spec))
    return {"phase": "Running", "accelerators": p.size, "level": p.level.name.lower(),
            "placement": {view.names[n]: c for n, c in p.nodes.items()},
            "reason": f"gang of {p.size} in one {p.level.name.lower()}"}


def scale_serving(body: dict[str, Any], api: Any, custom: Any) -> dict[str, Any]:
    """Bring a ServingDeployment to spec.replicas pods; preempt learning (checkpoint, then evict) if short."""
    spec, meta = body["spec"], body["metadata"]
    ns, name = meta["namespace"], meta["name"]
    unit = int(spec.get("replicaAccelerators", 1))
    want = int(spec["replicas"])
    view = View(api, ns)
    have = sorted(view.pods_of(name), key=lambda p: p.metadata.name)
    for p in have[want:]:
        api.delete_namespaced_pod(p.metadata.name, ns)
    missing = want - len(have)
    preempted: list[str] = []
    if missing > 0 and int((view.free // unit).sum()) < missing:
        preempted = _preempt_for(view, api, custom, ns, missing * unit - int((view.free // unit).sum()) * unit)
        view = View(api, ns)
    taken = {int(p.metadata.name.rsplit("-", 1)[1]) for p in have}
    free_idx = (k for k in range(10**6) if k not in taken)
    placed = 0
    if missing > 0:
        counts = view.cluster.can_place_units(view.free, unit, min(missing, int((view.free // unit).sum())))
        for n in np.flatnonzero(counts if counts is not None else []):
            for _ in range(int(counts[n])):  # type: ignore[index]
                api.create_namespaced_pod(ns, pod_manifest(body, "serving", next(free_idx), view.names[n], unit, spec))
                placed += 1
    ready = min(want, len(have) + placed)
    status = {"replicas": ready, "phase": "Ready" if ready == want else "Scaling"}
    if preempted:
        status["reason"] = f"preempted {', '.join(preempted)} (checkpoint requested, then evicted)"
    return status


def _preempt_for(view: View, api: Any, custom: Any, ns: str, need: int) -> list[str]:
    """Evict whole learning gangs, lowest priority and least work since checkpoint first, until `need` is free."""
    jobs = custom.list_namespaced_custom_object(GROUP, VERSION, ns, "learningjobs")["items"]
    now = dt.datetime.now(dt.UTC)
    running = [j for j in jobs if view.pods_of(j["metadata"]["name"])]
    if not running:
        return []
    prio = np.array([int(j["spec"].get("priority", 100)) for j in running])
    sizes = np.array([sum(pod_accelerators(p) for p in view.pods_of(j["metadata"]["name"])) for j in running])
    since = np.array([_since_checkpoint_s(j, now) for j in running]) * sizes
    victims: list[str] = []
    for i in victim_order(prio, since, sizes):
        if need <= 0:
            break
        job = running[int(i)]
        name = job["metadata"]["name"]
        # Ask the learner to checkpoint first; the eviction's grace period is the checkpoint time.
        custom.patch_namespaced_custom_object(GROUP, VERSION, ns, "learningjobs", name, {
            "metadata": {"annotations": {CHECKPOINT_ANNOTATION: now.isoformat()}},
            "status": {"phase": "Preempted", "reason": "serving needs the accelerators; checkpoint requested"}})
        for p in view.pods_of(name):
            api.create_namespaced_pod_eviction(p.metadata.name, ns, {
                "apiVersion": "policy/v1", "kind": "Eviction",
                "metadata": {"name": p.metadata.name, "namespace": ns},
                "deleteOptions": {"gracePeriodSeconds": int(job["spec"].get("checkpointSeconds", 30))}})
        need -= int(sizes[int(i)])
        victims.append(name)
    return victims


def _since_checkpoint_s(job: dict[str, Any], now: dt.datetime) -> float:
    last = (job.get("status") or {}).get("lastCheckpointTime")
    if not last:
        return 0.0
    return max(0.0, (now - dt.datetime.fromisoformat(last)).total_seconds())


def place_agent_group(body: dict[str, Any], api: Any) -> dict[str, Any]:
    """All members of an AgentGroup on one node: node affinity to it, plus pod affinity on the group label."""
    spec, meta = body["spec"], body["metadata"]
    view = View(api, meta["namespace"])
    if view.pods_of(meta["name"]):
        return {"phase": "Running"}
    members = spec["members"]
    total = sum(int(m.get("accelerators", 0)) for m in members)
    p = view.cluster.can_place(view.free, max(total, 1), Level.NODE)
    if p is None:
        return {"phase": "Pending", "reason": f"no single node has {total} free {ACCEL}; members must share a node"}
    (n,) = p.nodes
    for k, m in enumerate(members):
        api.create_namespaced_pod(meta["namespace"], pod_manifest(
            body, "agent_group", k, view.names[n], int(m.get("accelerators", 0)), m, colocate_with=meta["name"]))
    return {"phase": "Running", "node": view.names[n], "reason": f"{len(members)} members colocated"}


def register(registry: kopf.OperatorRegistry) -> None:
    """Attach the handlers to a kopf registry (the default one when run by `kopf run`)."""

    @kopf.on.login(registry=registry)
    def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
        server = os.environ.get("BLACKSOIL_K8S_SERVER")
        if server:
            return kopf.ConnectionInfo(server=server, insecure=True)
        return kopf.login_via_client(**kwargs)

    @kopf.on.startup(registry=registry)
    def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
        settings.posting.enabled = False
        settings.persistence.finalizer = "blacksoil.dev/operator"

    @kopf.on.resume(GROUP, VERSION, "learningjobs", registry=registry)
    @kopf.on.create(GROUP, VERSION, "learningjobs", registry=registry)
    def learning_created(body: kopf.Body, patch: kopf.Patch, **_: Any) -> None:
        patch.status.update(place_learning_job(dict(body), core_api()))

    @kopf.timer(GROUP, VERSION, "learningjobs", interval=float(os.environ.get("BLACKSOIL_REQUEUE_S", "10")),
                registry=registry)
    def learning_requeue(body: kopf.Body, patch: kopf.Patch, **_: Any) -> None:
        if (body.get("status") or {}).get("phase") in ("Pending", "Preempted"):
            patch.status.update(place_learning_job(dict(body), core_api()))

    @kopf.on.resume(GROUP, VERSION, "servingdeployments", registry=registry)
    @kopf.on.create(GROUP, VERSION, "servingdeployments", registry=registry)
    @kopf.on.update(GROUP, VERSION, "servingdeployments", field="spec.replicas", registry=registry)
    def serving_scaled(body: kopf.Body, patch: kopf.Patch, **_: Any) -> None:
        patch.status.update(scale_serving(dict(body), core_api(), custom_api()))

    @kopf.on.resume(GROUP, VERSION, "agentgroups", registry=registry)
    @kopf.on.create(GROUP, VERSION, "agentgroups", registry=registry)
    def group_created(body: kopf.Body, patch: kopf.Patch, **_: Any) -> None:
        patch.status.update(place_agent_group(dict(body), core_api()))


if os.environ.get("BLACKSOIL_OPERATOR_REGISTER", "1") == "1":
    register(kopf.get_default_registry())
