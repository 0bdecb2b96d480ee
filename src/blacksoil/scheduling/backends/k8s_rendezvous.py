"""Rendezvous of a LearningJob's gang on Kubernetes: a headless Service and torch.distributed's environment.

Each pod of the gang gets hostname `<job>-<k>` and subdomain `<job>`, so the headless Service `<job>` gives it the
stable DNS name `<job>-<k>.<job>.<namespace>.svc.<cluster domain>`. Every pod gets RANK (its index), WORLD_SIZE
(the pods placed), MASTER_ADDR (rank 0's DNS name) and MASTER_PORT: what torch.distributed's env:// rendezvous and
blacksoil's learner (learning/ddp.py) read. The Service publishes not-ready addresses, so the names resolve while
the ranks start, before any of them is Ready.
"""

from __future__ import annotations

import os
import re
from typing import Any

DEFAULT_PORT = 29500
"""torch.distributed's customary MASTER_PORT."""
CLUSTER_DOMAIN = os.environ.get("BLACKSOIL_CLUSTER_DOMAIN", "cluster.local")
_DNS_LABEL = re.compile(r"^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$")


def name_problem(name: str) -> str | None:
    """Why `name` cannot name the gang's headless Service and pod hostnames, or None when it can."""
    if _DNS_LABEL.match(name) and len(name) <= 56:  # room for the "-<rank>" of the pod hostnames
        return None
    return (f"LearningJob name {name!r} cannot name its rendezvous Service: use at most 56 lowercase letters, "
            "digits and '-', starting with a letter (a DNS-1035 label)")


def master_addr(name: str, namespace: str) -> str:
    """Rank 0's stable DNS name through the gang's headless Service."""
    return f"{name}-0.{name}.{namespace}.svc.{CLUSTER_DOMAIN}"


def port_of(spec: dict[str, Any]) -> int:
    return int(spec.get("rendezvousPort", DEFAULT_PORT))


def headless_service(owner: dict[str, Any], selector: dict[str, str], owner_ref: dict[str, Any]) -> dict[str, Any]:
    """The headless Service whose DNS records are the gang's pods (garbage-collected with the LearningJob)."""
    meta = owner["metadata"]
    port = port_of(owner["spec"])
    return {
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": meta["name"], "namespace": meta["namespace"], "labels": dict(selector),
                     "ownerReferences": [owner_ref]},
        "spec": {"clusterIP": "None", "selector": dict(selector), "publishNotReadyAddresses": True,
                 "ports": [{"name": "rendezvous", "port": port, "targetPort": port, "protocol": "TCP"}]},
    }


def rank_env(owner: dict[str, Any], rank: int, world_size: int) -> list[dict[str, str]]:
    """torch.distributed's env:// settings of one rank."""
    meta = owner["metadata"]
    return [{"name": "RANK", "value": str(rank)}, {"name": "WORLD_SIZE", "value": str(world_size)},
            {"name": "MASTER_ADDR", "value": master_addr(meta["name"], meta["namespace"])},
            {"name": "MASTER_PORT", "value": str(port_of(owner["spec"]))}]


def add_rendezvous(pod: dict[str, Any], owner: dict[str, Any], rank: int, world_size: int) -> dict[str, Any]:
    """`pod` (a gang member's manifest) with the hostname, subdomain, env and port of rank `rank`."""
    name = owner["metadata"]["name"]
    pod["spec"]["hostname"] = f"{name}-{rank}"
    pod["spec"]["subdomain"] = name
    container = pod["spec"]["containers"][0]
    container["env"] = [*container.get("env", []), *rank_env(owner, rank, world_size)]
    container["ports"] = [{"name": "rendezvous", "containerPort": port_of(owner["spec"]), "protocol": "TCP"}]
    return pod
