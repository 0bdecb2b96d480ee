"""The local backend with the real gateway and the real LoRA learner: load on the gateway takes the learner's core
(it checkpoints and stops, a second engine replica starts there); load falls, the replica drains and the learner
resumes from its checkpoint. No training step is lost or repeated and no request fails."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from blacksoil.config import load_settings, settings
from blacksoil.contracts import Allocation
from blacksoil.distributed import free_port
from blacksoil.errors import ConfigError, InternalError, RetryableError
from blacksoil.flywheel_traffic import ChatLoad, ClientSpec
from blacksoil.scheduling.backends.gateway_demand import GatewayDemand
from blacksoil.scheduling.backends.local import LocalBackend
from blacksoil.scheduling.backends.platform_workloads import GatewayReplicas, LearnerWorkload
from blacksoil.scheduling.config import SchedulingConfig
from blacksoil.scheduling.state import Action
from blacksoil.serving.config import ServingConfig
from blacksoil.serving.launch import gateway
from blacksoil.serving.models import ModelRegistry
from blacksoil.serving.pool import ReplicaPool

CFG = SchedulingConfig(step_s=0.5, replica_cold_start_s=0.0, restart_s=0.0, kill_grace_s=0.0,
                       hpa_scale_down_window_s=2.0, headroom_sigmas=0.0, min_headroom=0.0, lend_horizon_s=0.5)
STEPS = 40  # ~0.35 s a step: the preemption (~2 s after the load starts, more on a busy machine) comes first
LEARN = {"batch_size": 1, "max_seq_len": 48, "checkpoint_every": 2, "learning_rate": 1e-3}
CLIENTS = 4  # concurrent chat requests: two replicas' worth at 2 admitted per replica


def _until(backend: LocalBackend, cond: Callable[[], bool], timeout: float, what: str,
           each: Callable[[], None] = lambda: None) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        backend.step()
        each()
        if cond():
            return
        time.sleep(CFG.step_s)
    raise AssertionError(f"{what} not reached in {timeout} s; last step {backend.history[-1]}")


@pytest.fixture(scope="module")
def base_model(blacksoil_home: Path) -> None:
    """Dequantize the base model once before the clock matters (the worker processes reuse the cache)."""
    from blacksoil.config import settings
    from blacksoil.learning.basemodel import ensure_hf_copy

    ensure_hf_copy(settings().home)


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs two cores to split")
def test_gateway_load_preempts_real_learner_and_gives_the_core_back(tmp_path: Path, base_model: None) -> None:
    c0, c1 = sorted(os.sched_getaffinity(0))[:2]
    serving = ServingConfig.model_validate({"threads": 1, "slots": 2, "concurrency": 2, "ctx": 1024, "replicas": 1,
                                            "default_max_tokens": 16, "queue_timeout_s": 120.0})
    learner = LearnerWorkload("learner", tmp_path / "run", STEPS, LEARN, home=load_settings().home,
                              log=tmp_path / "learner.log")
    with gateway(load_settings(), serving=serving) as gw:
        replicas = GatewayReplicas("gateway", gw.pool)
        demand = GatewayDemand(gw.url, admitted_per_replica=serving.admitted(), cores_per_replica=1)
        backend = LocalBackend(replicas, [learner], demand=demand, cores=[c0, c1], cfg=CFG)
        busiest: dict[str, int] = {}

        def watch() -> None:
            for i in gw.pool.info():
                busiest[i.name] = max(busiest.get(i.name, 0), i.inflight)

        t0 = time.monotonic()
        phases: dict[str, float] = {}
        try:
            # No load: the gateway's replica is pinned to c0, the learner trains on c1 with one torch thread.
            _until(backend, lambda: learner.status().get("step", 0) >= 1, 180, "learner training")
            phases["learner_first_step"] = time.monotonic() - t0
            first = backend.history[-1]
            assert first.serving_cores == (c0,) and first.learner_cores == {"learner": (c1,)}
            (r0,) = replicas.replicas.values()
            assert replicas.replicas == {(c0,): r0} and len(gw.pool.info()) == 1
            st = learner.status()
            assert st["cores"] == [c1] and st["threads"] == 1 and st["resumed_from"] is None

            # Load rises: the learner checkpoints and stops; a second replica serves on its core.
            with ChatLoad(gw, ClientSpec("none"), CLIENTS) as load:
                _until(backend, lambda: not learner.running and len(replicas.replicas) == 2, 90,
                       "learner preempted, second replica up", watch)
                phases["preempted_and_grown"] = time.monotonic() - t0
                stops = [d for r in backend.history for d in r.decisions if d.action is Action.STOP]
                assert stops and stops[0].target == "learner" and stops[0].checkpoint
                preempted = learner.status()
                assert preempted["state"] == "preempted" and learner.exit_codes == [0]
                assert backend.history[-1].serving_cores == (c0, c1)
                r1 = replicas.replicas[(c1,)]
                assert {i.name for i in gw.pool.info()} == {r0, r1}
                # Keep the load on for a few steps: the new replica takes requests.
                _until(backend, lambda: busiest.get(r1, 0) > 0, 30, "requests on the new replica", watch)
                for _ in range(4):
                    backend.step()
                    watch()
                    time.sleep(CFG.step_s)

                # Load falls to one client: after the scale-down window the new replica drains (its requests
                # finish) and stops; the learner resumes from its checkpoint while the client keeps sending.
                load.active = 1
                phases["load_down"] = time.monotonic() - t0
                _until(backend, lambda: learner.running, 30, "learner restarted")
                phases["shrunk_and_learner_restarted"] = time.monotonic() - t0
                assert backend.history[-1].serving_cores == (c0,)
                assert replicas.replicas == {(c0,): r0} and [i.name for i in gw.pool.info()] == [r0]
                ok_before = load.ok
                _until(backend, lambda: load.ok > ok_before, 60, "requests served after the shrink")
            assert not load.failures, load.failures[:5]
            assert load.ok >= CLIENTS
            _until(backend, lambda: learner.status().get("state") == "done" and not learner.process.running, 300,
                   "learner finished")
            phases["learner_done"] = time.monotonic() - t0
            print("phases (s since start):", {k: round(v, 1) for k, v in phases.items()}, "requests ok:", load.ok)
        finally:
            backend.close()
        resumed = learner.status()
    assert resumed["resumed_from"] == preempted["step"], (preempted, resumed)
    assert learner.steps() == list(range(1, STEPS + 1)), "a training step was lost or repeated"
    assert learner.exit_codes == [0, 0]
    assert not learner.running


@pytest.fixture()
def metrics_server() -> Iterator[tuple[str, list[str]]]:
    """A plain HTTP server whose /metrics answers with whatever text the test puts in the list."""
    body = [""]

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            data = body[0].encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", body
    finally:
        server.shutdown()
        server.server_close()


def test_demand_is_busy_replicas_in_cores(metrics_server: tuple[str, list[str]]) -> None:
    url, body = metrics_server
    body[0] = "blacksoil:num_requests_running 3.0\nblacksoil:num_requests_waiting 5.0\n"
    assert GatewayDemand(url, admitted_per_replica=2, cores_per_replica=3)() == pytest.approx((3 + 5) / 2 * 3)
    body[0] = "some_other_metric 1.0\n"
    with pytest.raises(ConfigError, match="num_requests"):
        GatewayDemand(url, admitted_per_replica=2)()
    with pytest.raises(RetryableError, match="is the gateway running"):
        GatewayDemand(f"http://127.0.0.1:{free_port()}", admitted_per_replica=2, timeout_s=2)()
    with pytest.raises(ConfigError, match="admitted_per_replica=0"):
        GatewayDemand(url, admitted_per_replica=0)


def test_replica_core_groups_follow_engine_threads() -> None:
    entry = ModelRegistry(settings().home).resolve(None)
    two = ReplicaPool(ServingConfig.model_validate({"threads": 2}), entry, entry.name)
    assert GatewayReplicas("g", two).groups([5, 1, 2, 4, 3]) == [(1, 2), (3, 4)]  # core 5 alone fits no replica
    with pytest.raises(ConfigError, match=r"cores \[3\] but one replica needs 2"):
        GatewayReplicas("g", two).groups([3])
    with pytest.raises(ConfigError, match="upstream"):
        GatewayReplicas("g", ReplicaPool(ServingConfig(), None, "up"))


def test_worker_rejects_bad_input_with_a_message(tmp_path: Path) -> None:
    for args, says in ((["--steps", "0"], "--steps 0 must be at least 1"),
                       (["--steps", "2", "--config", "[1"], "is not JSON"),
                       (["--steps", "2", "--config", '{"batch_size": 0}'], "learning.batch_size")):
        p = subprocess.run([sys.executable, "-m", "blacksoil.learning.worker", "--run-dir", str(tmp_path),
                            "--home", str(tmp_path), *args],
                           capture_output=True, text=True, timeout=120)
        assert p.returncode == 2 and says in p.stderr and "Traceback" not in p.stderr, p.stderr


def test_learner_that_fails_its_checkpointed_stop_is_reported(tmp_path: Path) -> None:
    # --steps 0: exits 2 at once
    learner = LearnerWorkload("bad", tmp_path / "run", 0, home=tmp_path, log=tmp_path / "log")
    learner.start(Allocation(cores=(sorted(os.sched_getaffinity(0))[0],)))
    assert learner.process.proc is not None
    learner.process.proc.wait(timeout=120)
    with pytest.raises(InternalError, match="exited with 2"):
        learner.stop(checkpoint=True)
    assert learner.exit_codes == [2] and "must be at least 1" in (tmp_path / "log").read_text()


def test_learner_stopped_while_loading_exits_cleanly(tmp_path: Path, base_model: None) -> None:
    learner = LearnerWorkload("early", tmp_path / "run", 3, LEARN, home=load_settings().home, log=tmp_path / "log")
    learner.start(Allocation(cores=(sorted(os.sched_getaffinity(0))[0],)))
    end = time.monotonic() + 120
    while not (tmp_path / "run" / "status.json").exists() and time.monotonic() < end:
        time.sleep(0.05)
    learner.stop(checkpoint=True)  # raises unless the worker exits 0
    assert learner.exit_codes == [0]
    assert learner.status()["state"] == "preempted" and learner.steps() == []
