"""`blacksoil up --learner` with the learner as a scheduled workload, end to end on the running platform.

Outside clients chat and rate their answers (the round's training data, read back from the experience store); the
background learner starts its real round (collect → draw from replay → train → publish → gate) and its training
runs in the preemptible worker process that the local backend's unified policy places. While it trains, a load spike
hits the gateway: the learner checkpoints and yields its core to a second engine replica; when the load falls the
replica drains and the learner resumes from its checkpoint. Real components throughout (the small model's engine,
the store, the worker process, the gate); only the outside world is simulated.
"""

from __future__ import annotations

import json
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from blacksoil.config import Settings, load_settings
from blacksoil.flywheel_traffic import ChatLoad, ClientSpec

RUN = uuid.uuid4().hex[:6]
ACME_KEY, LEARN_KEY = f"acme-key-{RUN}-0123456789", f"learn-key-{RUN}-0123456789"
ACME = f"acme-{RUN}"
STEPS = 12  # enough that the load spike lands mid-training on a machine several times faster than 2 busy cores
CLIENTS = 4  # concurrent chats: two replicas' worth at 2 admitted per replica

pytestmark = pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs two cores to split")


@dataclass
class Seen:
    """What the scenario observed, for the facts below."""

    learner: Any = None
    history: list[Any] = field(default_factory=list)
    round: dict[str, Any] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)
    served_ok: int = 0
    console: dict[str, Any] = field(default_factory=dict)
    phases: dict[str, float] = field(default_factory=dict)
    scoring_cores: tuple[int, ...] = ()
    serving_cores: tuple[int, ...] = ()


def _wait(cond: Callable[[], bool], timeout: float, what: str, seen: Seen) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return
        time.sleep(0.1)
    last = seen.learner.status() if seen.learner is not None else {}
    raise AssertionError(f"{what} not reached in {timeout} s; learner status {last}")


@pytest.fixture(scope="module")
def settings_(blacksoil_home: Path) -> Settings:
    # Tiny training (short chats, batch 1) and a fast control loop; the rest as `blacksoil up --learner` runs.
    return load_settings(
        platform={"api_keys": {ACME_KEY: ACME, LEARN_KEY: f"learner-{RUN}"}, "learner_interval_s": 3600.0},
        agents={"api_key": LEARN_KEY},
        learning={"train_tenants": [ACME], "batch_size": 1, "max_seq_len": 96, "checkpoint_every": 2},
        serving={"threads": 1, "slots": 2, "concurrency": 2, "ctx": 2048, "replicas": 1, "default_max_tokens": 16,
                 "queue_timeout_s": 120.0},
        scheduling={"local_step_s": 0.5, "hpa_scale_down_window_s": 2.0, "headroom_sigmas": 0.0,
                    "min_headroom": 0.0, "lend_horizon_s": 0.5},
        agentscore={"step_budget": 2})


def _rated_chats(gw: Any) -> None:
    """Outside traffic the round learns from: short chats of the opted-in tenant, each rated good."""
    headers = {"Authorization": f"Bearer {ACME_KEY}"}
    for i in range(3):
        session = f"acme-{RUN}-{i}"
        r = httpx.post(gw.openai_base_url + "/chat/completions", headers=headers, timeout=120,
                       json={"model": gw.model, "max_tokens": 16, "user": session,
                             "messages": [{"role": "user", "content": f"Which press is on line {i}?"}]})
        assert r.status_code == 200, r.text
        r = httpx.post(gw.url + "/v1/feedback", headers=headers, timeout=30, json={"session_id": session, "value": 1.0})
        assert r.status_code == 200, r.text


@pytest.fixture(scope="module")
def seen(settings_: Settings) -> Iterator[Seen]:
    from blacksoil.learning.api import read_rounds
    from blacksoil.learning.basemodel import ensure_hf_copy
    from blacksoil.learning.loop import LoopOptions
    from blacksoil.platform import make_sink, running_platform, start_background_learner

    s = settings_
    ensure_hf_copy(s.home)  # the first dequantization stays out of the timings
    out = Seen()
    rounds_before = len(read_rounds(s.home))
    sink = make_sink(s)
    t0 = time.monotonic()
    try:
        with running_platform(s, sink=sink) as gw:
            _rated_chats(gw)
            stop = threading.Event()
            bg = start_background_learner(gw, s, stop, LoopOptions(suites=("tools-basic",), attempts=1,
                                                                   tasks_per_suite=1, gate_tasks=1, steps=STEPS,
                                                                   demos=False))
            assert bg.control is not None, "training is not scheduled"
            backend = bg.control.backend
            out.learner = learner = backend.learners["learner"]
            try:
                _wait(lambda: learner.running and learner.status().get("step", 0) >= 1, 900,
                      "the round's training started", out)
                out.phases["first_step"] = time.monotonic() - t0
                with ChatLoad(gw, ClientSpec(ACME_KEY), CLIENTS) as load:  # every outcome is kept
                    _wait(lambda: learner.preemptions >= 1 and len(backend.serving.replicas) == 2, 120,
                          "learner preempted and a second replica up", out)
                    out.phases["preempted_and_grown"] = time.monotonic() - t0
                    time.sleep(3)  # the second replica serves a while
                    load.active = 1  # the load falls; one client keeps sending through the drain
                    _wait(lambda: learner.running and len(backend.serving.replicas) == 1, 120,
                          "replica drained and learner resumed", out)
                    out.phases["shrunk_and_resumed"] = time.monotonic() - t0
                out.failures, out.served_ok = list(load.failures), load.ok
                _wait(lambda: len(read_rounds(s.home)) > rounds_before, 900, "the round finished", out)
                out.phases["round_done"] = time.monotonic() - t0
                out.round = read_rounds(s.home)[-1]
                _wait(lambda: not backend.recent(1)[0].learner_cores, 30, "the idle learner released its core", out)
                # What the next round's gate would score on, next to what serving holds at the same step.
                out.scoring_cores = bg.rounds.runner.scoring_cores()
                out.serving_cores = backend.recent(1)[0].serving_cores
                r = httpx.get(gw.url + "/v1/console/scheduling", headers={"Authorization": f"Bearer {ACME_KEY}"},
                              timeout=30)
                assert r.status_code == 200, r.text
                out.console = r.json()
            finally:
                stop.set()
                bg.join(timeout=120)
            out.history = backend.recent()
    finally:
        sink.close()
    out.phases["total"] = time.monotonic() - t0
    print("phases (s since the platform started):", {k: round(v, 1) for k, v in out.phases.items()},
          "requests ok:", out.served_ok)
    yield out


def test_the_learner_was_preempted_through_a_checkpoint(seen: Seen) -> None:
    assert seen.learner.preemptions >= 1


def test_every_optimizer_step_ran_exactly_once(seen: Seen) -> None:
    assert seen.learner.steps() == list(range(1, STEPS + 1))


def test_the_worker_resumed_from_its_checkpoint(seen: Seen) -> None:
    final = seen.learner.status()
    before = [r["step"] for r in seen.learner.records() if r["pid"] != final["pid"]]
    assert final["resumed_from"] == before[-1]


def test_no_request_failed(seen: Seen) -> None:
    assert seen.failures == [] and seen.served_ok > 0


def test_a_second_replica_came_and_drained(seen: Seen) -> None:
    counts = [len(r.serving_cores) for r in seen.history]
    assert 1 in counts[counts.index(2):]


def test_the_learner_took_its_core_back_after_the_drain(seen: Seen) -> None:
    counts = [len(r.serving_cores) for r in seen.history]
    after = seen.history[counts.index(2):]
    assert any(r.learner_cores for r in after)


def test_the_round_published_an_adapter(seen: Seen) -> None:
    from blacksoil.learning.adapters import AdapterStore

    store = AdapterStore(load_settings().home, _model())
    assert seen.round["steps"] == STEPS and store.get(seen.round["candidate"]).safetensors_dir.is_dir()


def test_training_reported_per_trajectory_loss_for_replay(seen: Seen) -> None:
    result = json.loads((seen.learner.run_dir / "result.json").read_text())
    assert result["trajectory_nll"] and len(result["losses"]) == STEPS


def test_an_idle_learner_holds_no_core(seen: Seen) -> None:
    released = [d for r in seen.history for d in r.decisions if d.reason.startswith("no work left")]
    assert released and not seen.history[-1].learner_cores


def test_the_console_shows_the_scheduler_live(seen: Seen) -> None:
    cards = {c["id"]: c["value"] for c in seen.console["cards"]}
    decisions = next(t for t in seen.console["tables"] if t["id"] == "live_decisions")["rows"]
    assert cards["live_preemptions"] >= 1 and any(row[3].startswith("serving short") for row in decisions)


def _model() -> str:
    from blacksoil.serving.models import ModelRegistry

    return ModelRegistry(load_settings().home).resolve(None).name


def test_the_gate_scores_on_cores_serving_does_not_hold(seen: Seen) -> None:
    assert seen.scoring_cores and not set(seen.scoring_cores) & set(seen.serving_cores)
