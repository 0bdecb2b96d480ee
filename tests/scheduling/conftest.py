"""A real multi-node Ray cluster on this machine, shared by the Ray tests of one session.

`ray.cluster_utils.Cluster`: a head with no CPUs (nothing runs there) and two worker nodes of 1 CPU each, tagged
with the topology resources the Ray backend reads (`blacksoil_host_n1`, `blacksoil_host_n2`, one rack each) and
two `acc` accelerators each (what the policy places). Each node is its own raylet with its own worker processes,
as on separate machines.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from blacksoil.scheduling.backends.local import LocalBackend


@pytest.fixture(scope="session")
def ray_cluster() -> Iterator[Any]:
    ray = pytest.importorskip("ray")
    from ray.cluster_utils import Cluster

    t0 = time.monotonic()
    cluster = Cluster(initialize_head=True, head_node_args={
        "num_cpus": 0, "include_dashboard": False, "object_store_memory": 80_000_000,
        "_system_config": {"memory_monitor_refresh_ms": 0}})
    try:
        for n in ("n1", "n2"):
            cluster.add_node(num_cpus=1, object_store_memory=80_000_000,
                             resources={"acc": 2, f"blacksoil_host_{n}": 1, f"blacksoil_rack_r{n[-1]}": 1})
        ray.init(address=cluster.address, log_to_driver=False, include_dashboard=False)
        cluster.wait_for_nodes()
        print(f"ray cluster up {time.monotonic() - t0:.1f}s")
        yield cluster
    finally:
        t = time.monotonic()
        if ray.is_initialized():
            ray.shutdown()
        cluster.shutdown()
        print(f"ray cluster down {time.monotonic() - t:.1f}s")


def node_with(ray: Any, resource: str) -> str:
    """Node id of the alive node offering `resource`."""
    (node,) = [n["NodeID"] for n in ray.nodes() if n["Alive"] and resource in n["Resources"]]
    return str(node)


def step_until(backend: LocalBackend, cond: Callable[[], bool], *, step_s: float, timeout: float,
               what: str = "condition") -> None:
    """Step the local backend every `step_s` until `cond()` holds; fail after `timeout` s with the last step."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        backend.step()
        if cond():
            return
        time.sleep(step_s)
    last = backend.history[-1] if backend.history else None
    raise AssertionError(f"{what} not reached in {timeout} s; last step {last}")
