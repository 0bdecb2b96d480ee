"""The cluster as the Kubernetes operator sees it: API clients, nodes and their free accelerators, blacksoil's pods,
and the Pod manifests it creates (the shared placement code's Cluster model, read from the API server)."""

from __future__ import annotations

import os
from typing import Any

import kopf
import numpy as np

from blacksoil.scheduling.topology import Cluster

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


def owner_ref(owner: dict[str, Any]) -> dict[str, Any]:
    """An ownerReference to a blacksoil custom resource: what it owns is garbage-collected with it."""
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": owner["kind"], "name": owner["metadata"]["name"],
            "uid": owner["metadata"].get("uid", ""), "controller": True}


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
                     "labels": {WORKLOAD_LABEL: name, KIND_LABEL: kind}, "ownerReferences": [owner_ref(owner)]},
        "spec": {"priorityClassName": template.get("priorityClassName", PRIORITY_CLASS[kind]),
                 "restartPolicy": "Never" if kind == "learning" else "Always",
                 "terminationGracePeriodSeconds": int(template.get("checkpointSeconds", 30)),
                 "affinity": affinity, "containers": [{k: v for k, v in container.items() if v is not None}]},
    }


def by_index(pods: list[Any]) -> list[Any]:
    """A workload's pods in index order (scaling down removes the highest indices first)."""
    return sorted(pods, key=lambda p: int(p.metadata.name.rsplit("-", 1)[1]))
