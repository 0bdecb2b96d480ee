"""`blacksoil up --backend ray`: the gateway hands its traffic to engine actors spread over the Ray nodes."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest
from openai import OpenAI

from blacksoil.config import load_settings
from blacksoil.errors import ConfigError
from blacksoil.scheduling.backends.ray_platform import ray_replicas, replica_backend
from blacksoil.scheduling.config import SchedulingConfig
from blacksoil.serving.config import ServingConfig
from blacksoil.serving.launch import gateway


def test_bad_ray_address_is_a_clear_error_before_anything_starts() -> None:
    with pytest.raises(ConfigError, match=r"'http://head' is not a Ray cluster address; pass `auto`"):
        replica_backend("ray", "http://head", SchedulingConfig())


def test_kubernetes_is_refused_by_up_with_the_fix() -> None:
    with pytest.raises(ConfigError, match="pass --backend local or --backend ray"):
        replica_backend("kubernetes", None, SchedulingConfig())


def test_up_with_a_bad_address_exits_2_naming_it() -> None:
    res = subprocess.run([sys.executable, "-m", "blacksoil.cli", "up", "--backend", "ray", "--address", "head:port"],
                         capture_output=True, text=True, timeout=120)
    assert (res.returncode, "'head:port' is not a Ray cluster address" in res.stderr) == (2, True), res.stderr


def test_replicas_spread_over_the_ray_nodes_serve_the_gateway(ray_cluster: Any) -> None:
    cfg = ServingConfig.model_validate({"threads": 1, "slots": 2, "concurrency": 2, "ctx": 2048,
                                        "default_max_tokens": 4, "queue_timeout_s": 60.0})
    with gateway(load_settings(), serving=cfg) as gw:
        with ray_replicas(gw.pool, ray_cluster.address, 2) as members:
            nodes = {members.node_of(n) for n in members.members}
            kinds = sorted(i.kind for i in gw.pool.info())
            client = OpenAI(base_url=gw.openai_base_url, api_key="unused")
            r = client.chat.completions.create(model=gw.model, messages=[{"role": "user", "content": "Hi"}])
        left = gw.pool.info()
    assert len(nodes) == 2  # SPREAD: one replica per worker node
    assert kinds == ["llamacpp_remote", "llamacpp_remote"]  # the gateway's own engine handed over and stopped
    assert r.choices[0].finish_reason in ("stop", "length")
    assert left == []  # on exit the actors are gone from the pool
