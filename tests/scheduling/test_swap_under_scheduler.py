"""The learner's hot swap and the local scheduler share the gateway's replica pool: after a swap replaced every
replica, the scheduler adopts the swap's replica onto its core (pinned), and a replica it adds for more demand serves
the promoted adapter, not the base model (real gateway, engines and a published adapter)."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from blacksoil.config import load_settings
from blacksoil.learning.adapters import AdapterStore
from blacksoil.learning.basemodel import info_from_gguf
from blacksoil.learning.randomlora import write_random_peft
from blacksoil.learning.swap import HotSwapper
from blacksoil.scheduling.backends.local import LocalBackend
from blacksoil.scheduling.backends.platform_workloads import GatewayReplicas
from blacksoil.scheduling.config import SchedulingConfig
from blacksoil.serving.config import ServingConfig
from blacksoil.serving.launch import gateway

from .conftest import step_until

CFG = SchedulingConfig(step_s=0.3, replica_cold_start_s=0.0, restart_s=0.0, kill_grace_s=0.0,
                       hpa_scale_down_window_s=0.6, headroom_sigmas=0.0, min_headroom=0.0, lend_horizon_s=0.3)



def _until(backend: LocalBackend, cond: Callable[[], bool], what: str, timeout: float = 120.0) -> None:
    step_until(backend, cond, step_s=CFG.step_s, timeout=timeout, what=what)


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs two cores to split")
def test_a_hot_swap_under_the_scheduler_stays_pinned_and_scale_ups_serve_it(tmp_path: Path) -> None:
    c0, c1 = sorted(os.sched_getaffinity(0))[:2]
    s = load_settings()
    serving = ServingConfig.model_validate({"threads": 1, "slots": 2, "concurrency": 2, "ctx": 1024, "replicas": 1,
                                            "default_max_tokens": 8})
    info = info_from_gguf()
    with gateway(s, serving=serving) as gw:
        adapter = AdapterStore(s.home, gw.model).publish(write_random_peft(tmp_path / "peft", info, b_std=0.002),
                                                         info)
        replicas = GatewayReplicas("gateway", gw.pool)
        load = [0.3]
        backend = LocalBackend(replicas, [], demand=lambda: load[0], cores=[c0, c1], cfg=CFG)
        try:
            backend.step()
            (blue,) = replicas.replicas.values()
            HotSwapper(gw).swap(adapter)
            _until(backend, lambda: blue not in replicas.replicas.values() and len(replicas.replicas) == 1,
                   "the swap's replica adopted")
            (green,) = replicas.replicas.values()
            pid = gw.pool.replicas[green].engine.pid  # type: ignore[attr-defined]
            assert replicas.replicas == {(c0,): green} and os.sched_getaffinity(pid) == {c0}

            load[0] = 1.5
            _until(backend, lambda: len(replicas.replicas) == 2, "a second replica for more demand")
            assert {i.adapter_version for i in gw.pool.info()} == {adapter.version}
        finally:
            backend.close()
