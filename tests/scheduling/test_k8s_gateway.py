"""Serving pods join the gateway: the operator on KMock registers a Ready pod with a real gateway's replica API.

The pod's engine is started here from the pod spec the operator rendered (its command, its env, the key from the
Secret the operator created), as the kubelet would; the pod's IP is 127.0.0.1 and the test marks it Ready. The
gateway is the real app with its own small engine, which is stopped once the pod's engine joined, so the chat that
follows can only be answered by the pod's engine.
"""

from __future__ import annotations

import asyncio
import base64
import os
import subprocess
import sys
from typing import Any

import httpx
import pytest

from blacksoil.config import load_settings
from blacksoil.distributed import free_port
from blacksoil.serving.config import ServingConfig
from blacksoil.serving.launch import GatewayHandle, gateway

from .k8s_kit import (
    create,
    delete_pod,
    mark_ready,
    objects,
    patch,
    pods_of,
    running_operator,
    setup_cluster,
    status_of,
    until,
)

ADMIN = "k8s-admin-key-0123456789"


def remote_replicas(gw: GatewayHandle) -> list[str]:
    """Engine URLs of the gateway's replicas that others run."""
    return [i.url for i in gw.pool.info() if i.kind == "llamacpp_remote"]


def start_pod_engine(pod: dict, secrets: dict[str, dict]) -> subprocess.Popen[str]:
    """Run the pod's container command with the pod's environment, secretKeyRefs resolved (the kubelet's part).

    Added for this machine: listen on loopback, one thread, a small context."""
    container = pod["spec"]["containers"][0]
    env = dict(os.environ)
    for e in container["env"]:
        if "value" in e:
            env[e["name"]] = e["value"]
        else:
            ref = e["valueFrom"]["secretKeyRef"]
            env[e["name"]] = base64.b64decode(secrets[ref["name"]]["data"][ref["key"]]).decode()
    env |= {"BLACKSOIL_ENGINE_HOST": "127.0.0.1", "BLACKSOIL_ENGINE_THREADS": "1", "BLACKSOIL_ENGINE_CTX": "2048"}
    command = [sys.executable if c == "python" else c for c in container["command"]]
    return subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)


def wait_ready(proc: subprocess.Popen[str]) -> str:
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.startswith("READY "):
            return line.split()[1]
    raise AssertionError(f"the pod's engine exited with {proc.wait()} before it was ready")


@pytest.fixture
def gw() -> Any:
    cfg = ServingConfig.model_validate({"threads": 1, "slots": 2, "concurrency": 2, "ctx": 2048,
                                        "default_max_tokens": 8, "admin_key": ADMIN})
    with gateway(load_settings(), serving=cfg) as handle:
        yield handle


async def test_ready_serving_pod_joins_the_gateway_and_leaves_when_gone(
        kmock: Any, monkeypatch: pytest.MonkeyPatch, gw: GatewayHandle) -> None:
    setup_cluster(kmock, monkeypatch, nodes=1, per_node=1)
    monkeypatch.setenv("BLACKSOIL_GATEWAY_ADMIN_KEY", ADMIN)
    port = free_port()
    base = f"http://127.0.0.1:{port}/v1"
    (own,) = [i.name for i in gw.pool.info()]
    async with running_operator():
        await create(kmock, "servingdeployments", "chat", {"minReplicas": 1, "maxReplicas": 1, "slots": 2,
                                                           "port": port, "image": "engine:1", "gatewayUrl": gw.url})
        await until(lambda: "chat-0" in pods_of(kmock, "chat") and "chat-engine-key" in objects(kmock, "secrets"))
        engine = start_pod_engine(pods_of(kmock, "chat")["chat-0"], objects(kmock, "secrets"))
        try:
            await asyncio.to_thread(wait_ready, engine)
            await asyncio.sleep(3 * 0.25)  # a few control steps while the pod is not Ready
            assert remote_replicas(gw) == []

            await mark_ready(kmock, "chat-0", "127.0.0.1")
            await until(lambda: remote_replicas(gw) == [base], what="the Ready pod in the gateway's pool")
            await until(lambda: "chat-0" in status_of(kmock, "servingdeployments", "chat").get("gatewayReplicas", {}))

            await asyncio.to_thread(gw.pool.stop_replica, own)  # from here on only the pod's engine serves
            r = await asyncio.to_thread(httpx.post, gw.url + "/v1/chat/completions", timeout=120,
                                        json={"messages": [{"role": "user", "content": "Say hi."}], "max_tokens": 4})
            assert r.status_code == 200, r.text
            assert r.json()["choices"][0]["message"]["content"]

            # The pod goes away (deleted, evicted, its node lost): its replica leaves the pool.
            await delete_pod(kmock, "chat-0")
            await until(lambda: remote_replicas(gw) == [], what="the deleted pod out of the pool")

            # Its replacement (minReplicas 1) joins once Ready. Scaled to zero with a request on it, it is drained in
            # the gateway first: the request finishes, then the replica leaves the pool and the pod is deleted.
            await until(lambda: "chat-0" in pods_of(kmock, "chat"), what="the replacement pod")
            await mark_ready(kmock, "chat-0", "127.0.0.1")
            await until(lambda: remote_replicas(gw) == [base], what="the replacement in the pool")
            (name,) = [i.name for i in gw.pool.info() if i.url == base]
            busy = asyncio.create_task(asyncio.to_thread(
                httpx.post, gw.url + "/v1/chat/completions", timeout=120,
                json={"messages": [{"role": "user", "content": "Count from 1 to 50."}], "max_tokens": 48}))
            await until(lambda: gw.pool.inflight(name) > 0, what="a request on the pod's engine")
            await patch(kmock, "servingdeployments", "chat", {"spec": {"minReplicas": 0, "maxReplicas": 0}})
            assert (await busy).status_code == 200
            await until(lambda: pods_of(kmock, "chat") == {}, what="scaled to zero")
            assert remote_replicas(gw) == []
        finally:
            engine.terminate()
            await asyncio.to_thread(engine.wait, 20)
