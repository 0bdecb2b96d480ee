"""The Kubernetes backend: a kopf operator reconciling ServingDeployment, LearningJob and AgentGroup to Pods.

Pods carry priority classes and node affinity to the topology domain the shared placement code chose. A
ServingDeployment's replica count is the unified policy's, from the demand its gateway's /metrics shows, within the
spec's bounds (k8s_scaling.py); serving growth preempts learning through the Eviction API after asking the job to
checkpoint; Ready serving pods are registered with the gateway's replica API and removed from it when they go
(k8s_gateway.py). A LearningJob's gang gets a headless Service and torch.distributed's rendezvous environment
(k8s_rendezvous.py). Run with `kopf run -A -m blacksoil.scheduling.backends.k8s_operator`
(deploy/kubernetes/operator.yaml).
"""

from __future__ import annotations

import datetime as dt
import os
import threading
from collections.abc import Callable
from typing import Any

import kopf
import numpy as np

from blacksoil.errors import BlacksoilError
from blacksoil.scheduling.backends import k8s_gateway, k8s_rendezvous
from blacksoil.scheduling.backends.gateway_demand import GatewayDemand
from blacksoil.scheduling.backends.k8s_cluster import (
    ACCEL,
    CHECKPOINT_ANNOTATION,
    GROUP,
    KIND_LABEL,
    VERSION,
    WORKLOAD_LABEL,
    View,
    by_index,
    core_api,
    custom_api,
    owner_ref,
    pod_accelerators,
    pod_manifest,
    pod_node,
)
from blacksoil.scheduling.backends.k8s_scaling import DemandScaler, bounds, learning_jobs
from blacksoil.scheduling.config import SchedulingConfig
from blacksoil.scheduling.policy import victim_order
from blacksoil.scheduling.topology import Level

REQUEUE_S = float(os.environ.get("BLACKSOIL_REQUEUE_S", "10"))
"""Seconds between two control steps: placement retries, and scaling and registering serving replicas."""


# ---- reconcilers (plain functions; kopf handlers below only wire them) ----

def place_learning_job(body: dict[str, Any], api: Any) -> dict[str, Any]:
    """Place a LearningJob's gang in the smallest topology domain (at most a pod), elastic down to minSize, with a
    headless Service and each pod's rank, world size and rank 0's address."""
    problem = k8s_rendezvous.name_problem(body["metadata"]["name"])
    if problem:
        return {"phase": "Invalid", "reason": problem}
    with _placement:
        return _place_learning_job(body, api)


def _place_learning_job(body: dict[str, Any], api: Any) -> dict[str, Any]:
    spec, meta = body["spec"], body["metadata"]
    view = View(api, meta["namespace"])
    if view.pods_of(meta["name"]):  # placed already, or preempted and its pods not evicted yet: wait for that
        return {} if (body.get("status") or {}).get("phase") == "Preempted" else {"phase": "Running"}
    p = None
    for size in dict.fromkeys([int(spec["size"]), int(spec.get("minSize", spec["size"]))]):
        p = view.cluster.can_place(view.free, size, Level.POD)
        if p is not None:
            break
    if p is None:
        return {"phase": "Pending", "reason": f"no pod-level topology domain has {spec.get('minSize', spec['size'])} "
                                              f"free {ACCEL}; waiting for capacity"}
    _create(lambda: api.create_namespaced_service(meta["namespace"], k8s_rendezvous.headless_service(
        body, {WORKLOAD_LABEL: meta["name"]}, owner_ref(body))))
    members = sorted(p.nodes.items())
    for k, (n, c) in enumerate(members):
        pod = pod_manifest(body, "learning", k, view.names[n], c, spec)
        api.create_namespaced_pod(meta["namespace"], k8s_rendezvous.add_rendezvous(pod, body, k, len(members)))
    return {"phase": "Running", "accelerators": p.size, "level": p.level.name.lower(),
            "placement": {view.names[n]: c for n, c in p.nodes.items()}, "worldSize": len(members),
            "masterAddr": k8s_rendezvous.master_addr(meta["name"], meta["namespace"]),
            "reason": f"gang of {p.size} in one {p.level.name.lower()}"}


def _create(call: Callable[[], Any]) -> None:
    """Create an object that may exist already (a gang placed again after a preemption keeps its Service)."""
    from kubernetes.client.exceptions import ApiException

    try:
        call()
    except ApiException as e:
        if e.status != 409:
            raise


def scale_serving(body: dict[str, Any], api: Any, custom: Any, want: int) -> dict[str, Any]:
    """Bring a ServingDeployment to `want` pods; preempt learning (checkpoint, then evict) if short."""
    with _placement:
        return _scale_serving(body, api, custom, want)


def _scale_serving(body: dict[str, Any], api: Any, custom: Any, want: int) -> dict[str, Any]:
    spec, meta = body["spec"], body["metadata"]
    ns, name = meta["namespace"], meta["name"]
    unit = int(spec.get("replicaAccelerators", 1))
    view = View(api, ns)
    have = by_index(view.pods_of(name))
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
                pod = pod_manifest(body, "serving", next(free_idx), view.names[n], unit, spec)
                api.create_namespaced_pod(ns, k8s_gateway.add_engine(pod, body))
                placed += 1
    ready = min(want, len(have) + placed)
    status: dict[str, Any] = {"replicas": ready, "phase": "Ready" if ready == want else "Scaling"}
    if preempted:
        status["reason"] = f"preempted {', '.join(preempted)} (checkpoint requested, then evicted)"
    return status


def reconcile_serving(body: dict[str, Any], api: Any, custom: Any, scaler: DemandScaler) -> dict[str, Any]:
    """One control step of a ServingDeployment: demand from its gateway → the policy's replica count → pods, then
    its Ready pods registered with the gateway."""
    meta = body["metadata"]
    with _lock(f"{meta['namespace']}/{meta['name']}"):
        return _reconcile_serving(body, api, custom, scaler)


def _reconcile_serving(body: dict[str, Any], api: Any, custom: Any, scaler: DemandScaler) -> dict[str, Any]:
    spec, meta = body["spec"], body["metadata"]
    ns, name = meta["namespace"], meta["name"]
    key = f"{ns}/{name}"
    lo, hi = bounds(spec)
    if lo > hi:
        return {"phase": "Invalid", "reason": f"minReplicas {lo} exceeds maxReplicas {hi}; lower minReplicas"}
    view = View(api, ns)
    pods = view.pods_of(name)
    unit = int(spec.get("replicaAccelerators", 1))
    url = k8s_gateway.gateway_url(spec)
    notes: list[str] = []
    demand: float | None = None
    want = min(hi, max(lo, len(pods)))  # without a demand reading, keep what runs (within the bounds)
    if url is None:
        notes.append("no gateway to read demand from: set spec.gatewayUrl or the operator's BLACKSOIL_GATEWAY_URL")
    else:
        try:
            demand = GatewayDemand(url, admitted_per_replica=int(spec.get("slots", 4)), cores_per_replica=unit)()
            held = np.zeros(len(view.names), dtype=np.int64)
            for p in pods:
                if pod_node(p) in view.index:
                    held[view.index[pod_node(p)]] += 1
            jobs = learning_jobs(custom.list_namespaced_custom_object(GROUP, VERSION, ns, "learningjobs")["items"])
            want = scaler.target(key, spec, view.cluster, held, view.free, jobs, demand)
        except BlacksoilError as e:
            notes.append(f"demand unknown, holding {want} replicas: {e.message}")
    client = k8s_gateway.GatewayClient.for_spec(spec)
    port = k8s_gateway.engine_port(spec)
    engine_key = k8s_gateway.ensure_engine_key(api, body, owner_ref(body))

    for pod in by_index(pods)[want:]:
        try:  # before the pod is deleted: its in-flight requests finish in the gateway first
            if client is not None:
                k8s_gateway.unregister(client, key, pod, port)
        except BlacksoilError as e:  # the pod goes either way; the next step removes what is left
            notes.append(f"draining {pod.metadata.name}: {e.message}")
    status = scale_serving(body, api, custom, want)
    status.update({"desiredReplicas": want, "demand": None if demand is None else round(demand, 3)})
    if client is None:
        notes.append("serving pods are not registered with a gateway: set BLACKSOIL_GATEWAY_ADMIN_KEY on the operator")
    else:
        try:
            status["gatewayReplicas"], problems = register_serving_pods(body, api, client, engine_key)
            notes += problems
        except BlacksoilError as e:
            notes.append(f"registration: {e.message}")
    if notes:
        status["reason"] = "; ".join([status["reason"], *notes] if "reason" in status else notes)
    return status


def register_serving_pods(body: dict[str, Any], api: Any, client: k8s_gateway.GatewayClient,
                          engine_key: str) -> tuple[dict[str, str], list[str]]:
    """The deployment's Ready pods registered with its gateway, the others removed there."""
    spec, meta = body["spec"], body["metadata"]
    ns, name = meta["namespace"], meta["name"]
    pods = [p for p in api.list_namespaced_pod(ns).items if (p.metadata.labels or {}).get(WORKLOAD_LABEL) == name
            and (p.metadata.labels or {}).get(KIND_LABEL) == "serving"]
    with _lock(f"{ns}/{name}"):
        return k8s_gateway.sync_registrations(client, f"{ns}/{name}", pods, k8s_gateway.engine_port(spec), engine_key,
                                              int(spec.get("slots", 4)))


_placement = threading.RLock()
"""Held from reading the cluster to creating its pods by every placement (gangs, replicas, groups): kopf runs their
handlers in threads of their own, and two placements from one reading would hand out the same accelerators twice."""
_locks: dict[str, threading.RLock] = {}


def _lock(key: str) -> threading.RLock:
    """One control step or registration pass per deployment at a time: kopf runs its timer, its change handlers
    and the pod events in threads of their own, and two passes would create the same pod twice."""
    return _locks.setdefault(key, threading.RLock())


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
    with _placement:
        return _place_agent_group(body, api)


def _place_agent_group(body: dict[str, Any], api: Any) -> dict[str, Any]:
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


def register(registry: kopf.OperatorRegistry, cfg: SchedulingConfig | None = None,
             interval_s: float = REQUEUE_S) -> None:
    """Attach the handlers to a kopf registry (the default one when run by `kopf run`).

    `cfg`: the policy's settings (None = blacksoil's, `[scheduling]`); `interval_s`: the control step, which is also
    the policy's step."""
    if cfg is None:
        from blacksoil.config import settings

        cfg = settings().scheduling
    scaler = DemandScaler(cfg.model_copy(update={"step_s": interval_s}))

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

    @kopf.timer(GROUP, VERSION, "learningjobs", interval=interval_s, registry=registry)
    def learning_requeue(body: kopf.Body, patch: kopf.Patch, **_: Any) -> None:
        if (body.get("status") or {}).get("phase") in ("Pending", "Preempted"):
            patch.status.update(place_learning_job(dict(body), core_api()))

    @kopf.on.resume(GROUP, VERSION, "servingdeployments", registry=registry)
    @kopf.on.create(GROUP, VERSION, "servingdeployments", registry=registry)
    @kopf.on.update(GROUP, VERSION, "servingdeployments", field="spec", registry=registry)
    @kopf.timer(GROUP, VERSION, "servingdeployments", interval=interval_s, registry=registry)
    def serving_step(body: kopf.Body, patch: kopf.Patch, **_: Any) -> None:
        patch.status.update(reconcile_serving(dict(body), core_api(), custom_api(), scaler))

    @kopf.on.delete(GROUP, VERSION, "servingdeployments", registry=registry, optional=True)
    def serving_deleted(body: kopf.Body, **_: Any) -> None:
        scaler.forget(f"{body['metadata']['namespace']}/{body['metadata']['name']}")

    @kopf.on.event("", "v1", "pods", labels={KIND_LABEL: "serving"}, registry=registry)
    def serving_pod_changed(body: kopf.Body, **_: Any) -> None:
        """A serving pod became Ready or went away: (un)register it with the gateway now, not at the next step."""
        from kubernetes.client.exceptions import ApiException

        if not os.environ.get("BLACKSOIL_GATEWAY_ADMIN_KEY"):
            return  # registration is off
        meta = body["metadata"]
        try:
            owner = custom_api().get_namespaced_custom_object(GROUP, VERSION, meta["namespace"], "servingdeployments",
                                                              meta["labels"][WORKLOAD_LABEL])
        except ApiException as e:
            if e.status == 404:
                return  # its deployment is being deleted: its pods and registrations go with it
            raise
        client = k8s_gateway.GatewayClient.for_spec(owner["spec"])
        if client is None:
            return
        api = core_api()
        try:
            register_serving_pods(owner, api, client, k8s_gateway.ensure_engine_key(api, owner, owner_ref(owner)))
        except BlacksoilError as e:  # the deployment's next control step retries
            raise kopf.TemporaryError(e.message, delay=interval_s) from None

    @kopf.on.resume(GROUP, VERSION, "agentgroups", registry=registry)
    @kopf.on.create(GROUP, VERSION, "agentgroups", registry=registry)
    def group_created(body: kopf.Body, patch: kopf.Patch, **_: Any) -> None:
        patch.status.update(place_agent_group(dict(body), core_api()))


if os.environ.get("BLACKSOIL_OPERATOR_REGISTER", "1") == "1":
    register(kopf.get_default_registry())
