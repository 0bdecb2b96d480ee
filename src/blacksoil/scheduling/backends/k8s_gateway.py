"""Serving pods and the gateway on Kubernetes: each pod's engine, its key, and its registration with the gateway.

A ServingDeployment's pods run llama.cpp's server (k8s_engine.py) on `spec.port`, guarded by a key the operator
generates once per deployment and keeps in the Secret `<name>-engine-key` (garbage-collected with it); the pods get
it through a secretKeyRef. When a pod is Ready, the operator registers `http://<pod IP>:<port>/v1` with the gateway's
replica API (serving/replica_api.py) under the owner `<namespace>/<name>`; when it is no longer Ready or gone, the
operator removes it, and before it deletes a pod to scale down it drains it there first. The gateway's own list is
the record of what is registered, so a restarted operator or gateway is reconciled on the next step.

Operator environment: BLACKSOIL_GATEWAY_URL (when the spec names no gatewayUrl) and BLACKSOIL_GATEWAY_ADMIN_KEY
(the gateway's serving.admin_key; without it pods are scaled but not registered).
"""

from __future__ import annotations

import base64
import os
import secrets
from typing import Any

import httpx

from blacksoil.errors import BlacksoilError, ConfigError, RetryableError
from blacksoil.scheduling.backends.k8s_engine import DEFAULT_PORT
from blacksoil.serving.config import PREFILL_CHUNK_DEFAULT
from blacksoil.serving.replica_api import PREFIX

KEY_FIELD = "api-key"
ENGINE_COMMAND = ["python", "-m", "blacksoil.scheduling.backends.k8s_engine"]
DRAIN_TIMEOUT_S = 330.0
"""How long a drained removal may take (the pool waits up to 300 s for in-flight requests)."""


def gateway_url(spec: dict[str, Any]) -> str | None:
    """The gateway a ServingDeployment reads demand from and registers with: its spec, else the operator's env."""
    url = spec.get("gatewayUrl") or os.environ.get("BLACKSOIL_GATEWAY_URL") or ""
    return url.rstrip("/") or None


def engine_port(spec: dict[str, Any]) -> int:
    return int(spec.get("port", DEFAULT_PORT))


def key_secret(name: str) -> str:
    return f"{name}-engine-key"


def ensure_engine_key(api: Any, owner: dict[str, Any], owner_ref: dict[str, Any]) -> str:
    """The deployment's engine key, creating its Secret on first use (a random 256-bit key)."""
    from kubernetes.client.exceptions import ApiException

    meta = owner["metadata"]
    ns, name = meta["namespace"], key_secret(meta["name"])
    try:
        secret = api.read_namespaced_secret(name, ns)
    except ApiException as e:
        if e.status != 404:
            raise
        key = secrets.token_urlsafe(32)
        api.create_namespaced_secret(ns, {
            "apiVersion": "v1", "kind": "Secret", "type": "Opaque",
            "metadata": {"name": name, "namespace": ns, "ownerReferences": [owner_ref]},
            "data": {KEY_FIELD: base64.b64encode(key.encode()).decode()}})
        return key
    return base64.b64decode((secret.data or {})[KEY_FIELD]).decode()


def add_engine(pod: dict[str, Any], owner: dict[str, Any]) -> dict[str, Any]:
    """`pod` (a serving replica's manifest) with the engine's command, port, key, slots, prefill chunk and readiness
    probe."""
    spec, name = owner["spec"], owner["metadata"]["name"]
    port = engine_port(spec)
    container = pod["spec"]["containers"][0]
    container.setdefault("command", list(ENGINE_COMMAND))
    container["env"] = [*container.get("env", []),
                        {"name": "BLACKSOIL_ENGINE_PORT", "value": str(port)},
                        {"name": "BLACKSOIL_ENGINE_SLOTS", "value": str(int(spec.get("slots", 4)))},
                        {"name": "BLACKSOIL_ENGINE_PREFILL_CHUNK",
                         "value": str(int(spec.get("prefillChunk", PREFILL_CHUNK_DEFAULT)))},
                        {"name": "BLACKSOIL_ENGINE_API_KEY",
                         "valueFrom": {"secretKeyRef": {"name": key_secret(name), "key": KEY_FIELD}}}]
    container["ports"] = [{"name": "engine", "containerPort": port, "protocol": "TCP"}]
    # llama.cpp answers /health without the key, and only once the model is loaded.
    container["readinessProbe"] = {"httpGet": {"path": "/health", "port": port}, "periodSeconds": 2,
                                   "failureThreshold": 3}
    return pod


def ready_api_base(pod: Any, port: int) -> str | None:
    """`http://<pod IP>:<port>/v1` when the pod is Ready and not terminating, else None."""
    if pod.metadata.deletion_timestamp or not pod.status or not pod.status.pod_ip:
        return None
    if not any(c.type == "Ready" and c.status == "True" for c in pod.status.conditions or []):
        return None
    ip = str(pod.status.pod_ip)
    return f"http://[{ip}]:{port}/v1" if ":" in ip else f"http://{ip}:{port}/v1"


class GatewayClient:
    """The gateway's replica API, as the operator calls it."""

    def __init__(self, url: str, admin_key: str, timeout_s: float = 30.0) -> None:
        self.url = url.rstrip("/") + PREFIX
        self.headers = {"Authorization": f"Bearer {admin_key}"}
        self.timeout_s = timeout_s

    @classmethod
    def for_spec(cls, spec: dict[str, Any]) -> GatewayClient | None:
        """A client for the deployment's gateway, or None when there is no gateway URL or admin key."""
        url, key = gateway_url(spec), os.environ.get("BLACKSOIL_GATEWAY_ADMIN_KEY", "")
        return cls(url, key) if url and key else None

    def _call(self, method: str, path: str = "", timeout_s: float | None = None, missing_ok: bool = False,
              **kw: Any) -> Any:
        try:
            r = httpx.request(method, self.url + path, headers=self.headers, timeout=timeout_s or self.timeout_s, **kw)
        except httpx.HTTPError as e:
            raise RetryableError(f"the gateway at {self.url} does not answer ({type(e).__name__}: {e})") from None
        if r.status_code == 404 and missing_ok:
            return None
        if r.status_code >= 400:
            try:
                msg = r.json()["error"]["message"]
            except (ValueError, KeyError, TypeError):
                msg = r.text[:200]
            err = RetryableError if r.status_code >= 500 or r.status_code == 429 else ConfigError
            raise err(f"{method} {self.url}{path}: {r.status_code} {msg}")
        return r.json()

    def replicas(self) -> list[dict[str, Any]]:
        return list(self._call("GET")["data"])

    def register(self, api_base: str, api_key: str, slots: int, owner: str) -> str:
        body = {"api_base": api_base, "api_key": api_key, "slots": slots, "owner": owner}
        return str(self._call("POST", json=body)["name"])

    def remove(self, name: str, drain: bool) -> None:
        self._call("DELETE", f"/{name}", timeout_s=DRAIN_TIMEOUT_S if drain else None, missing_ok=True,
                   params={"drain": str(drain).lower()})  # already gone (a race with another pass): done


def sync_registrations(client: GatewayClient, owner: str, pods: list[Any], port: int, api_key: str,
                       slots: int) -> tuple[dict[str, str], list[str]]:
    """Register `owner`'s Ready pods, remove its replicas whose pod is gone or not Ready.

    Returns ({pod name: gateway replica name}, problems); one engine that does not answer yet does not hold up the
    others (it is registered on a later step)."""
    listed = [r for r in client.replicas() if r.get("owner") == owner]
    want = {base: p.metadata.name for p in pods if (base := ready_api_base(p, port))}
    problems: list[str] = []
    mine: dict[str, str] = {}
    for r in listed:
        # Gone or failing its readiness probe; or failed in the gateway, which cannot restart an engine it does not
        # own (it stays "restarting" there): removed, and registered again below while its pod is Ready.
        if r["api_base"] not in want or r["status"] == "restarting":
            client.remove(str(r["name"]), drain=False)
        else:
            mine[r["api_base"]] = str(r["name"])
    registered: dict[str, str] = {}
    for base, pod in sorted(want.items(), key=lambda kv: kv[1]):
        try:
            registered[pod] = mine.get(base) or client.register(base, api_key, slots, owner)
        except BlacksoilError as e:
            problems.append(f"{pod}: {e.message}")
    return registered, problems


def unregister(client: GatewayClient, owner: str, pod: Any, port: int) -> None:
    """Drain `pod`'s replica in the gateway and remove it (before the pod is deleted to scale down)."""
    base = ready_api_base(pod, port)
    for r in client.replicas():
        if r.get("owner") == owner and r["api_base"] == base:
            client.remove(str(r["name"]), drain=True)
