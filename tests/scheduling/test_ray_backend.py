"""The Ray backend driven by the unified policy on a real two-node Ray cluster: real engine replicas joining a
real gateway, a real two-rank LoRA gang preempted with a checkpoint and resumed from it, an agent group placed."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from openai import OpenAI

from blacksoil.config import load_settings
from blacksoil.learning.basemodel import ensure_hf_copy, load_tokenizer
from blacksoil.learning.checkpoint import Checkpointer
from blacksoil.learning.config import LearningConfig
from blacksoil.learning.samples import TrainSample
from blacksoil.serving.config import ServingConfig
from blacksoil.serving.launch import GatewayHandle, gateway

ray = pytest.importorskip("ray")

from blacksoil.scheduling.backends.ray_backend import RayBackend, RayGroup  # noqa: E402
from blacksoil.scheduling.backends.ray_learning import LearnerSpec, read_steps  # noqa: E402
from blacksoil.scheduling.config import SchedulingConfig  # noqa: E402
from blacksoil.scheduling.state import Action  # noqa: E402
from blacksoil.scheduling.workloads import AgentGroup, LearningJob  # noqa: E402


@pytest.fixture(scope="module")
def gw(ray_cluster: Any) -> Iterator[GatewayHandle]:
    cfg = ServingConfig.model_validate({"threads": 1, "slots": 2, "concurrency": 2, "ctx": 2048,
                                        "default_max_tokens": 8, "queue_timeout_s": 60.0})
    with gateway(load_settings(), serving=cfg) as handle:
        yield handle


@pytest.fixture(scope="module")
def spec(blacksoil_home: Path) -> LearnerSpec:
    info = ensure_hf_copy(blacksoil_home)
    tok = load_tokenizer(info)
    prompt = tok.apply_chat_template([{"role": "user", "content": "What is the secret word?"}], tokenize=True,
                                     add_generation_prompt=True)
    prompt = prompt if isinstance(prompt, list) else prompt["input_ids"]
    sample = TrainSample(tuple(prompt), tuple(tok("zebracorn42<|im_end|>", add_special_tokens=False).input_ids))
    cfg = LearningConfig(batch_size=2, max_seq_len=48, checkpoint_every=50, lora_layers=2)
    return LearnerSpec(info, cfg, (sample,), steps=10_000)  # preempted long before the end


def _run(backend: RayBackend, cond: Callable[[], bool], timeout: float = 180.0) -> None:
    t0 = time.monotonic()
    end = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < end, "condition not reached"
        backend.step()
        time.sleep(0.2)
    print(f"phase {time.monotonic() - t0:.1f}s")


@pytest.mark.slow  # two LoRA trainer ranks started twice, three engines: ~2 min of CPU on 2 cores
def test_policy_preempts_and_resumes_a_real_gang_beside_real_replicas(gw: GatewayHandle, spec: LearnerSpec,
                                                                      tmp_path: Path) -> None:
    cfg = SchedulingConfig(step_s=0.2, replica_cold_start_s=0.0, restart_s=0.0, kill_grace_s=0.0,
                           hpa_scale_down_window_s=0.5, headroom_sigmas=0.0, min_headroom=0.0, lend_horizon_s=0.2)
    load = [0.5]
    backend = RayBackend([LearningJob("train", size=2, work_acc_h=1.0)], demand=lambda: load[0], ckpt_dir=tmp_path,
                         pool=gw.pool, learners={"train": spec},
                         groups=[RayGroup(AgentGroup("crew", accelerators=1), members=2)], accelerator="acc", cfg=cfg)
    run_dir = tmp_path / "train"
    try:
        _run(backend, lambda: "train" in backend.running and "crew" in backend.running)
        gang = backend.running["train"].gang
        assert gang is not None
        nodes = {ray.get(a.progress.remote())["node"] for a in gang.actors}
        assert len(nodes) == 1  # the 2-accelerator gang went to one node (smallest domain), STRICT_PACK
        crew_nodes = {ray.get(a.node.remote()) for a in backend.running["crew"].actors}
        assert len(crew_nodes) == 1 and crew_nodes != nodes  # agent group colocated, beside the serving replica
        _run(backend, lambda: len(read_steps(run_dir)) >= 1)  # the real trainer is stepping

        load[0] = 2.0  # serving needs 3 accelerators: the learner is checkpointed and removed
        _run(backend, lambda: "train" not in backend.running and sum(map(len, backend.replicas.values())) == 3)
        stops = [d for _, d in backend.state.log if d.action is Action.STOP]
        assert stops and stops[0].target == "train" and stops[0].checkpoint
        saved = Checkpointer(run_dir).latest()
        assert saved is not None and saved.step == read_steps(run_dir)[-1]["step"]  # stopped on a checkpoint
        remote = [i for i in gw.pool.info() if i.kind == "llamacpp_remote"]
        assert len(remote) == 3 and {i.status for i in remote} == {"ready"}
        client = OpenAI(base_url=gw.openai_base_url, api_key="unused")
        for i in range(4):  # new sessions spread over the replicas; every one answers
            r = client.chat.completions.create(model=gw.model, messages=[{"role": "user", "content": "Hi"}],
                                               max_tokens=2, extra_headers={"X-Session-Id": f"s{i}"})
            assert r.choices[0].message is not None

        load[0] = 0.3  # demand falls: serving shrinks, the gang comes back from its checkpoint
        _run(backend, lambda: "train" in backend.running)
        gang = backend.running["train"].gang
        assert gang is not None
        _run(backend, lambda: len(read_steps(run_dir)) > saved.step)
        log = read_steps(run_dir)
        assert [e["step"] for e in log] == list(range(1, len(log) + 1))  # continuous: none lost, none repeated
        assert {ray.get(a.progress.remote())["resumed_from"] for a in gang.actors} == {saved.step}
    finally:
        backend.close()
