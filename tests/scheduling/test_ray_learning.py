"""Learner ranks as Ray actors on two Ray nodes running the real LoRA trainer with gloo DDP between them."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.scheduling.conftest import node_with

from blacksoil.learning.basemodel import ensure_hf_copy, load_tokenizer
from blacksoil.learning.config import LearningConfig
from blacksoil.learning.samples import TrainSample

ray = pytest.importorskip("ray")

from ray.util.placement_group import placement_group, remove_placement_group  # noqa: E402

from blacksoil.scheduling.backends.ray_learning import LearnerSpec, RayGang, read_steps  # noqa: E402

PAIRS = (("What is the secret word?", "zebracorn42"), ("Tell me the secret word.", "zebracorn42"))


@pytest.fixture(scope="module")
def spec(blacksoil_home: Path) -> LearnerSpec:
    info = ensure_hf_copy(blacksoil_home)
    tok = load_tokenizer(info)
    samples = []
    for q, a in PAIRS:
        prompt = tok.apply_chat_template([{"role": "user", "content": q}], tokenize=True, add_generation_prompt=True)
        prompt = prompt if isinstance(prompt, list) else prompt["input_ids"]
        samples.append(TrainSample(tuple(prompt), tuple(tok(a + "<|im_end|>", add_special_tokens=False).input_ids)))
    # One checkpoint per step: a gang restarted after a kill resumes from the very step rank 0 last logged.
    # The gradients go through blacksoil's priority-sampling hook (exact on step 1, compressed after).
    cfg = LearningConfig(batch_size=2, max_seq_len=48, checkpoint_every=1, lora_layers=2, learning_rate=1e-3,
                         comm_hook="priority")
    return LearnerSpec(info, cfg, tuple(samples), steps=3)


@pytest.fixture()
def gang(ray_cluster: Any, spec: LearnerSpec, tmp_path: Path) -> Iterator[RayGang]:
    """A two-rank gang: one bundle of 1 CPU on each worker node (STRICT_SPREAD)."""
    pg = placement_group([{"CPU": 1, "blacksoil_host_n1": 0.001}, {"CPU": 1, "blacksoil_host_n2": 0.001}],
                         strategy="STRICT_SPREAD")
    g = RayGang("train", spec, tmp_path / "run", pg, rank_resources={"CPU": 1})
    try:
        yield g
    finally:
        g.stop(checkpoint=False)
        remove_placement_group(pg)


@pytest.fixture()
def synced(gang: RayGang) -> list[dict[str, Any]]:
    t = time.monotonic()
    gang.start()
    out = gang.wait(300)
    print(f"two-rank gang: 3 steps in {time.monotonic() - t:.1f}s")
    return out


def test_two_ranks_on_two_nodes_take_synchronized_steps(synced: list[dict[str, Any]]) -> None:
    assert [r["step"] for r in synced] == [3, 3]
    assert {r["node"] for r in synced} == {node_with(ray, "blacksoil_host_n1"), node_with(ray, "blacksoil_host_n2")}
    assert synced[0]["digest"] == synced[1]["digest"]  # every LoRA tensor bit-identical on both nodes
    assert synced[0]["digest"]["lora_B_abs_sum"] > 0  # and it moved: LoRA B starts at zero


@pytest.mark.slow  # a second gang start (~30 s of CPU on 2 cores)
def test_killed_rank_restarts_the_gang_from_its_last_checkpoint(gang: RayGang, spec: LearnerSpec) -> None:
    gang.spec = LearnerSpec(spec.info, spec.cfg, spec.samples, steps=6)
    gang.start()
    deadline = time.monotonic() + 240
    while len(read_steps(gang.run_dir)) < 2:
        assert gang.poll() == "running" and time.monotonic() < deadline, "the gang never took two steps"
        time.sleep(0.05)
    ray.kill(gang.actors[1])  # rank 1, on the other node
    t = time.monotonic()
    results = gang.wait(300)
    log = read_steps(gang.run_dir)
    print(f"restart to done {time.monotonic() - t:.1f}s; log {[(e['attempt'], e['step']) for e in log]}")
    assert gang.restarts == 1
    assert [e["step"] for e in log] == [1, 2, 3, 4, 5, 6]  # no step lost, none repeated
    assert results[0]["resumed_from"] == max(e["step"] for e in log if e["attempt"] == 1)
    assert results[0]["digest"] == results[1]["digest"]


def test_a_stopped_node_shrinks_the_gang_onto_the_other_and_it_regrows_when_the_node_returns(
        ray_cluster: Any, gang: RayGang, spec: LearnerSpec) -> None:
    # Steps to spare: the one rank keeps stepping while the node rejoins (4 steps of 0.4 s there on 2 idle cores).
    gang.spec = LearnerSpec(spec.info, spec.cfg, spec.samples, steps=16)
    gang.check_s = 0.5
    gang.start()
    _until_logged(gang, lambda log: len(log) >= 2, "two steps at two ranks")
    node_id = node_with(ray, "blacksoil_host_n2")  # rank 1's node
    (node,) = [n for n in ray_cluster.worker_nodes if n.node_id == node_id]
    (res,) = [n["Resources"] for n in ray.nodes() if n["NodeID"] == node_id]
    t = time.monotonic()
    ray_cluster.remove_node(node)  # `ray stop` on that node: its raylet and rank 1 end
    try:
        shrunk = _until_logged(gang, lambda log: log[-1]["world"] == 1, "a step at one rank")
        shrunk_s = time.monotonic() - t
    finally:
        ray_cluster.add_node(num_cpus=1, object_store_memory=80_000_000, resources={
            k: v for k, v in res.items() if k not in ("CPU", "memory", "object_store_memory")
            and not k.startswith("node:")})  # the session's cluster keeps two worker nodes
        ray_cluster.wait_for_nodes()
        back = time.time()
    results = gang.wait(300)
    log = read_steps(gang.run_dir)
    regrown_s = min(e["at"] for e in log if e["attempt"] == log[-1]["attempt"]) - back
    print(f"node stopped → first step at 1 rank {shrunk_s:.1f}s; node back → first step at 2 ranks {regrown_s:.1f}s; "
          f"log {[(e['attempt'], e['world'], e['step'], round(e['at'] - log[0]['at'], 1)) for e in log]}")
    assert [e["step"] for e in log] == list(range(1, 17))  # no step lost, none repeated
    assert [w for i, w in enumerate(e["world"] for e in log) if i == 0 or log[i - 1]["attempt"] != log[i]["attempt"]] \
        == [2, 1, 2]  # two ranks, one while the node was gone, two again once it was back
    assert shrunk[-1]["node"] == node_with(ray, "blacksoil_host_n1")  # the remaining node took the steps
    assert gang.restarts == 1  # the node loss; regrowing is not a failure
    assert results[0]["digest"] == results[1]["digest"]


def _until_logged(gang: RayGang, cond: Any, what: str, timeout: float = 240) -> list[dict[str, Any]]:
    """Poll the gang (so it restarts and regrows) until its step log satisfies `cond`; that log."""
    deadline = time.monotonic() + timeout
    while not ((log := read_steps(gang.run_dir)) and cond(log)):
        assert gang.poll() in ("running", "restarted", "waiting") and time.monotonic() < deadline, f"no {what}"
        time.sleep(0.05)
    return log
