"""The Ray backend on a real Ray cluster on 127.0.0.1: a head and one worker, started and stopped here.

Both run `ray start --block` in their own process session, so teardown ends exactly those processes
(by process-group id) even when the test fails; `ray stop` would also stop other users' Ray nodes.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

ray = pytest.importorskip("ray")
from ray._private import services  # noqa: E402

from blacksoil.scheduling.backends.ray_backend import RayBackend, RayGroup  # noqa: E402
from blacksoil.scheduling.config import SchedulingConfig  # noqa: E402
from blacksoil.scheduling.state import Action  # noqa: E402
from blacksoil.scheduling.workloads import AgentGroup, LearningJob  # noqa: E402

# `ray start`, except that a loopback --node-ip-address is kept: Ray's CLI otherwise swaps 127.0.0.1 for the
# host's outward address (resolve_ip_for_localhost), and refuses multi-node clusters if detection is off.
RAY_START = [sys.executable, "-c", "import sys, ray._private.services as s; s.resolve_ip_for_localhost = lambda h: h; "
             "from ray.scripts.scripts import main; sys.argv[0] = 'ray'; main()"]
COMMON = ["--node-ip-address=127.0.0.1", "--num-cpus=1", "--num-gpus=0", "--object-store-memory=80000000",
          "--disable-usage-stats", "--block"]


def _start(args: list[str], log: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "RAY_memory_monitor_refresh_ms": "0"}
    return subprocess.Popen([*RAY_START, "start", *args, *COMMON], stdout=log.open("wb"), stderr=subprocess.STDOUT,
                            start_new_session=True, env=env)


def _end(p: subprocess.Popen[bytes]) -> None:
    # Ray drains for up to 30 s on SIGTERM; this test cluster holds nothing worth draining.
    for sig, wait in ((signal.SIGTERM, 3), (signal.SIGKILL, 10)):
        try:
            os.killpg(p.pid, sig)
        except ProcessLookupError:
            return
        try:
            p.wait(timeout=wait)
            time.sleep(0.5)
        except subprocess.TimeoutExpired:
            continue


@pytest.fixture(scope="module")
def ray_cluster() -> Iterator[str]:
    tmp = Path(tempfile.mkdtemp(prefix="bsray", dir="/tmp"))  # short: Ray's socket paths have a length limit
    procs: list[subprocess.Popen[bytes]] = []
    t_start = time.monotonic()
    saved = None
    try:
        head = _start(["--head", "--port=0", f"--temp-dir={tmp}", "--include-dashboard=false",
                       '--resources={"acc": 2, "blacksoil_host_h0": 1, "blacksoil_rack_r0": 1}'], tmp / "head.log")
        procs.append(head)
        address = None
        end = time.monotonic() + 90
        while address is None and time.monotonic() < end and head.poll() is None:
            # With --port=0 the head writes the port it got into <temp-dir>/ray_current_cluster.
            f = tmp / "ray_current_cluster"
            text = f.read_text().strip() if f.exists() else ""
            address = f"127.0.0.1:{text.rsplit(':', 1)[1]}" if ":" in text else None
            time.sleep(0.5)
        assert address, (tmp / "head.log").read_text(errors="replace")[-2000:]
        procs.append(_start([f"--address={address}",
                             '--resources={"acc": 2, "blacksoil_host_h1": 1, "blacksoil_rack_r1": 1}'],
                            tmp / "worker.log"))
        t = time.monotonic()
        # The driver, too, must keep the loopback address it is given.
        saved = services.resolve_ip_for_localhost
        services.resolve_ip_for_localhost = lambda h: h
        ray.init(address=address, log_to_driver=False)
        print(f"ray up {t - t_start:.1f}s, init {time.monotonic() - t:.1f}s")
        end = time.monotonic() + 90
        while len([n for n in ray.nodes() if n["Alive"]]) < 2:
            assert time.monotonic() < end, (tmp / "worker.log").read_text(errors="replace")[-2000:]
            time.sleep(0.5)
        assert {n["NodeManagerAddress"] for n in ray.nodes() if n["Alive"]} == {"127.0.0.1"}
        yield address
    finally:
        t_down = time.monotonic()
        if ray.is_initialized():
            ray.shutdown()
        print(f"ray.shutdown {time.monotonic() - t_down:.1f}s")
        if saved is not None:
            services.resolve_ip_for_localhost = saved
        for p in reversed(procs):
            _end(p)
        shutil.rmtree(tmp, ignore_errors=True)
        print(f"teardown {time.monotonic() - t_down:.1f}s")


def _run(backend: RayBackend, cond, timeout: float = 45.0) -> None:  # type: ignore[no-untyped-def]
    t0 = time.monotonic()
    end = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < end, "condition not reached"
        backend.step()
        time.sleep(0.2)
    print(f"phase {time.monotonic() - t0:.1f}s")


def test_gang_preemption_and_colocation_on_real_ray(ray_cluster: str, tmp_path: Path) -> None:
    cfg = SchedulingConfig(step_s=0.2, replica_cold_start_s=0.0, restart_s=0.0, kill_grace_s=0.0,
                           hpa_scale_down_window_s=0.5, headroom_sigmas=0.0, min_headroom=0.0, lend_horizon_s=0.2)
    load = [0.5]
    backend = RayBackend([LearningJob("train", size=2, work_acc_h=1.0)], demand=lambda: load[0], ckpt_dir=tmp_path,
                         groups=[RayGroup(AgentGroup("crew", accelerators=1), members=2)], accelerator="acc", cfg=cfg)
    try:
        _run(backend, lambda: "train" in backend.running and "crew" in backend.running)
        train = backend.running["train"]
        nodes = {ray.get(a.progress.remote())["node"] for a in train.actors}
        assert len(nodes) == 1  # the 2-accelerator gang went to one node (smallest domain), STRICT_PACK
        crew_nodes = {ray.get(a.node.remote()) for a in backend.running["crew"].actors}
        assert len(crew_nodes) == 1 and crew_nodes != nodes  # agent group colocated, beside the serving replica
        time.sleep(1.0)

        load[0] = 2.0  # serving needs 3 accelerators: the learner is checkpointed and removed
        _run(backend, lambda: "train" not in backend.running and sum(map(len, backend.replicas.values())) == 3)
        stops = [d for _, d in backend.state.log if d.action is Action.STOP]
        assert stops and stops[0].target == "train" and stops[0].checkpoint
        saved = [json.loads(p.read_text())["step"] for p in sorted(tmp_path.glob("train.rank*.json"))]
        assert len(saved) == 2 and min(saved) > 0
        assert [ray.get(r.ping.remote(), timeout=30) for reps in backend.replicas.values() for r in reps]

        load[0] = 0.3  # demand falls: serving shrinks, the gang comes back from its checkpoint
        _run(backend, lambda: "train" in backend.running)
        resumed = sorted(ray.get(a.progress.remote())["resumed_from"] for a in backend.running["train"].actors)
        assert resumed == sorted(saved)
    finally:
        backend.close()
