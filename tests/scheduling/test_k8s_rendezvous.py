"""A LearningJob's gang can rendezvous: the pod specs the operator renders on KMock (one rank per pod, a headless
Service) meet in a real gloo group through learning/ddp.py's reading of their environment.

Here there is no cluster DNS: the ranks are local processes and MASTER_ADDR (rank 0's name through the headless
Service) is replaced by 127.0.0.1; everything else is the rendered environment as it is.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from typing import Any

import pytest

from blacksoil.distributed import free_port
from blacksoil.errors import ConfigError
from blacksoil.learning.ddp import env_rendezvous

from .k8s_kit import create, kc, objects, pods_of, running_operator, setup_cluster, status_of, until

JOIN = """
import torch, torch.distributed as dist
from blacksoil.distributed import process_group
from blacksoil.learning.ddp import env_rendezvous
rank, rdv = env_rendezvous()
with process_group(rdv, rank):
    t = torch.tensor([float(rank)])
    dist.all_reduce(t)
    print(rank, dist.get_world_size(), int(t.item()))
"""
"""One rank: join the group from the environment, all-reduce its rank, print (rank, world size, sum of ranks)."""


def env_of(pod: dict) -> dict[str, str]:
    return {e["name"]: e["value"] for e in pod["spec"]["containers"][0]["env"] if "value" in e}


async def test_a_gangs_pods_can_rendezvous(kmock: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    setup_cluster(kmock, monkeypatch, nodes=3, per_node=8)
    port = free_port()
    async with running_operator():
        # 24 accelerators on three 8-accelerator nodes: one pod (one rank) per node.
        await create(kmock, "learningjobs", "train", {"size": 24, "image": "learner:1", "rendezvousPort": port})
        await until(lambda: len(pods_of(kmock, "train")) == 3 and "train" in objects(kmock, "services"))
        await until(lambda: status_of(kmock, "learningjobs", "train").get("phase") == "Running")
    pods, service = pods_of(kmock, "train"), objects(kmock, "services")["train"]
    envs = [env_of(p) for p in pods.values()]

    # Distinct ranks 0..n-1, one world size n.
    assert sorted(int(e["RANK"]) for e in envs) == [0, 1, 2]
    assert {e["WORLD_SIZE"] for e in envs} == {"3"}
    # One MASTER_ADDR: rank 0's hostname, through the headless Service, in the job's namespace; one port.
    (addr,) = {e["MASTER_ADDR"] for e in envs}
    (rank0,) = [p for p in pods.values() if env_of(p)["RANK"] == "0"]
    host, subdomain, namespace, *_ = addr.split(".")
    assert (host, subdomain, namespace) == (rank0["spec"]["hostname"], service["metadata"]["name"], "default")
    assert {p["spec"]["subdomain"] for p in pods.values()} == {service["metadata"]["name"]}
    assert {e["MASTER_PORT"] for e in envs} == {str(port)}
    # The headless Service selects every pod of the gang, publishes them before they are Ready, owned by the job.
    assert service["spec"]["clusterIP"] == "None"
    assert all(service["spec"]["selector"].items() <= p["metadata"]["labels"].items() for p in pods.values())
    assert service["spec"]["publishNotReadyAddresses"] is True
    assert service["spec"]["ports"][0]["port"] == port
    assert service["metadata"]["ownerReferences"][0]["kind"] == "LearningJob"
    assert {p["spec"]["priorityClassName"] for p in pods.values()} == {"blacksoil-learning"}
    assert sum(int(p["spec"]["containers"][0]["resources"]["requests"][kc.ACCEL]) for p in pods.values()) == 24

    # The rendered environments form one real gloo group (MASTER_ADDR → 127.0.0.1: no cluster DNS here).
    procs = [subprocess.Popen([sys.executable, "-c", JOIN], text=True, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, env=os.environ | e | {"MASTER_ADDR": "127.0.0.1"}) for e in envs]
    outs = await asyncio.gather(*(asyncio.to_thread(p.communicate, timeout=120) for p in procs))
    assert [p.returncode for p in procs] == [0, 0, 0], [err[-500:] for _, err in outs]
    assert sorted(tuple(map(int, out.split())) for out, _ in outs) == [(0, 3, 3), (1, 3, 3), (2, 3, 3)]


async def test_a_name_that_cannot_name_a_service_is_refused(kmock: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    setup_cluster(kmock, monkeypatch, nodes=1, per_node=8)
    async with running_operator():
        await create(kmock, "learningjobs", "9train", {"size": 8, "image": "learner:1"})
        await until(lambda: status_of(kmock, "learningjobs", "9train").get("phase") == "Invalid")
    assert pods_of(kmock, "9train") == {}


def test_ddp_refuses_a_partial_rendezvous_environment() -> None:
    with pytest.raises(ConfigError, match="MASTER_PORT"):
        env_rendezvous({"RANK": "0", "WORLD_SIZE": "2", "MASTER_ADDR": "train-0.train"})


def test_ddp_without_a_rank_stays_local() -> None:
    assert env_rendezvous({"MASTER_ADDR": "somewhere", "MASTER_PORT": "29500"}) is None
