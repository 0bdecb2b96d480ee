"""Hot swap on a real gateway: streams in flight survive blue/green swaps, the served version is verified, and a
canary that does not prove itself is rolled back with blue still serving."""

from __future__ import annotations

import threading
from pathlib import Path

from blacksoil.config import load_settings
from blacksoil.learning.adapters import AdapterStore
from blacksoil.learning.basemodel import info_from_gguf
from blacksoil.learning.bench import LoadStats, _session
from blacksoil.learning.randomlora import write_random_peft
from blacksoil.learning.swap import HotSwapper, served_counts
from blacksoil.serving.launch import GatewayHandle


def _publish(tmp: Path, gw: GatewayHandle, seed: int) -> object:
    info = info_from_gguf()
    store = AdapterStore(load_settings().home, gw.model)
    return store.publish(write_random_peft(tmp / f"a{seed}", info, b_std=0.002, seed=seed), info)


def test_swaps_under_load_drop_nothing_and_serve_the_new_version(gw: GatewayHandle, tmp_path: Path) -> None:
    stats, stop = LoadStats(), threading.Event()
    threads = [threading.Thread(target=_session, args=(gw.url, gw.model, f"s{k}", stop, stats, 12), daemon=True)
               for k in range(2)]
    for t in threads:
        t.start()
    swapper = HotSwapper(gw)
    reports = []
    for seed in (1, 2):
        av = _publish(tmp_path, gw, seed)
        reports.append(swapper.swap(av))  # type: ignore[arg-type]
        assert swapper.served_versions() == {av.version}  # type: ignore[attr-defined]
    stop.set()
    for t in threads:
        t.join(timeout=300)
    assert stats.failed == 0, stats.errors
    assert stats.requests >= 4
    assert all(r.ok and not r.rolled_back for r in reports)
    assert all(0 < r.visible_s <= r.seconds for r in reports)
    last = reports[-1].to_version
    assert served_counts(gw.url)[0].get(last, 0) >= 1  # /metrics counted requests served by the new version
    assert len(gw.pool.info()) == 1


def test_canary_that_cannot_prove_itself_is_rolled_back(gw: GatewayHandle, tmp_path: Path) -> None:
    swapper = HotSwapper(gw, canary=True, canary_requests=10_000, canary_timeout_s=1.0)
    before = swapper.served_versions()
    av = _publish(tmp_path, gw, 3)
    report = swapper.swap(av)  # type: ignore[arg-type]
    assert report.rolled_back and not report.ok
    assert "served" in report.reason
    assert swapper.served_versions() == before  # blue still serves, green is gone
    assert all(i.accepting_new_sessions for i in gw.pool.info())


def test_a_blue_replica_the_scheduler_already_stopped_does_not_fail_the_swap(gw: GatewayHandle) -> None:
    # The local backend may scale serving down (drain + stop) while a swap retires the same replica.
    HotSwapper(gw)._retire("replica-already-gone")
    assert "replica-already-gone" not in gw.pool.replicas
