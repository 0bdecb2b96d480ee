"""Sum-tree and prioritized replay: proportional sampling, α/β, weights, staleness, dedup, persistence."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from blacksoil.contracts import ExperienceEvent
from blacksoil.errors import ConfigError, NotFoundError
from blacksoil.experience.priorities import priority_terms, trajectory_priorities
from blacksoil.experience.replay import PrioritizedReplay, policy_version_number
from blacksoil.experience.store import ExperienceStore
from blacksoil.experience.sumtree import SumTree


def test_sumtree_find_matches_cumsum_search() -> None:
    rng = np.random.default_rng(1)
    tree = SumTree(1000)
    p = rng.random(1000)
    p[::7] = 0.0
    tree.set(np.arange(1000), p)
    assert tree.total == pytest.approx(p.sum())
    mass = rng.random(5000) * p.sum()
    expected = np.searchsorted(np.cumsum(p), mass, side="right")
    assert np.array_equal(tree.find(mass), expected)
    tree.set(np.array([3, 3, 10]), np.array([5.0, 6.0, 0.0]))  # duplicates: last write wins
    p[3], p[10] = 6.0, 0.0
    assert tree.total == pytest.approx(p.sum())


def test_sumtree_sampling_is_proportional() -> None:
    tree = SumTree(4)
    tree.set(np.arange(4), np.array([1.0, 2.0, 3.0, 0.0]))
    draws = np.concatenate([tree.sample(600, np.random.default_rng(s)) for s in range(20)])
    freq = np.bincount(draws, minlength=4) / draws.size
    assert freq[3] == 0.0
    assert np.allclose(freq[:3], [1 / 6, 2 / 6, 3 / 6], atol=0.01)
    with pytest.raises(NotFoundError):
        SumTree(8).sample(1, np.random.default_rng())
    with pytest.raises(ConfigError):
        tree.set(np.array([0]), np.array([-1.0]))


def test_new_items_enter_at_max_priority_and_alpha_applies() -> None:
    buf = PrioritizedReplay(capacity=8, alpha=0.5, eps=0.0)
    a = buf.add("a", 0, priority=4.0)
    b = buf.add("b", 0)
    assert buf.tree.leaves()[a % 8] == pytest.approx(2.0)  # 4 ** 0.5
    assert buf.tree.leaves()[b % 8] == pytest.approx(2.0), "new item gets the max priority seen"
    buf.update_priorities([b], [16.0])
    assert buf.tree.leaves()[b % 8] == pytest.approx(4.0)
    c = buf.add("c", 0)
    assert buf.tree.leaves()[c % 8] == pytest.approx(4.0)


def test_importance_weights_and_beta_annealing() -> None:
    buf = PrioritizedReplay(capacity=4, alpha=1.0, beta0=0.5, beta_steps=10, eps=0.0)
    buf.add_many(["a", "b", "c", "d"], [0, 0, 0, 0], [1.0, 1.0, 1.0, 5.0])
    batch = buf.sample(64, policy_version=0)
    assert batch.beta == pytest.approx(0.5)
    expected = np.power(4 * batch.probs, -0.5)
    assert np.allclose(batch.weights, expected / expected.max())
    assert batch.weights.max() == pytest.approx(1.0)
    assert set(np.round(batch.probs, 6)) <= {0.125, 0.625}
    for _ in range(20):
        batch = buf.sample(8, 0)
    assert batch.beta == 1.0


def test_staleness_bound_excludes_old_policy_versions() -> None:
    buf = PrioritizedReplay(capacity=100, max_staleness=2)
    buf.add_many([f"old{i}" for i in range(90)], [1] * 90)
    buf.add_many([f"new{i}" for i in range(10)], [5] * 10)
    batch = buf.sample(200, policy_version=6)
    assert all(k.startswith("new") for k in batch.keys)
    assert (batch.policy_versions >= 4).all()
    with pytest.raises(NotFoundError, match="fresh"):
        buf.sample(10, policy_version=20)


def test_dedup_ring_overwrite_and_stale_ids() -> None:
    buf = PrioritizedReplay(capacity=3)
    first = buf.add("s1", 0, content_hash="h1")
    assert buf.add("s1-again", 0, content_hash="h1") == first
    assert len(buf) == 1
    buf.add("s2", 0, content_hash="h2")
    buf.add("s3", 0, content_hash="h3")
    buf.add("s4", 0, content_hash="h4")  # overwrites s1's slot
    assert len(buf) == 3 and "h1" not in buf.by_hash
    assert buf.add("s1-back", 0, content_hash="h1") != first, "an evicted trajectory may come back"
    assert buf.update_priorities([first], [100.0]) == 0, "ids already overwritten are ignored"
    with pytest.raises(ConfigError):
        buf.update_priorities([1, 2], [1.0])


def test_persisted_across_restarts(tmp_path: Path) -> None:
    buf = PrioritizedReplay(capacity=50, seed=3)
    buf.add_many([f"k{i}" for i in range(40)], np.arange(40) % 3, np.linspace(0.1, 4, 40))
    buf.add("dup", 2, content_hash="abc")
    for _ in range(5):
        b = buf.sample(8, 2)
        buf.update_priorities(b.ids, np.ones(8) * 7)
    buf.save(tmp_path / "replay.npz")
    back = PrioritizedReplay.load(tmp_path / "replay.npz", seed=9)
    buf.rng = np.random.default_rng(9)
    assert len(back) == len(buf) and back.steps == buf.steps and back.max_priority == buf.max_priority
    assert np.allclose(back.tree.tree, buf.tree.tree)
    assert back.add("dup-again", 2, content_hash="abc") == buf.by_hash["abc"]
    b1, b2 = buf.sample(16, 2), back.sample(16, 2)
    assert np.array_equal(b1.ids, b2.ids) and b1.keys == b2.keys and np.allclose(b1.weights, b2.weights)
    with pytest.raises(NotFoundError):
        PrioritizedReplay.load(tmp_path / "missing.npz")


def test_priority_sources() -> None:
    now = time.time()
    trajs = [
        {"task_id": "t1", "reward": 1.0, "failed": False, "created_at": now},
        {"task_id": "t1", "reward": 0.0, "failed": True, "created_at": now},
        {"task_id": "t2", "reward": 1.0, "failed": False, "created_at": now - 86_400},
        {"task_id": "t2", "reward": 1.0, "failed": False, "created_at": now - 86_400},
        {"task_id": "t3", "reward": 0.0, "failed": False, "created_at": now},
    ]
    terms = priority_terms(trajs, now, half_life_s=86_400)
    assert terms["failure"].tolist() == [0, 1, 0, 0, 0]
    assert terms["advantage"].tolist() == [0.5, 0.5, 0.0, 0.0, 0.0]
    assert terms["learnability"].tolist() == [1.0, 1.0, 0.0, 0.0, 0.0], "groups without variance teach nothing"
    assert np.allclose(terms["recency"], [1, 1, 0.5, 0.5, 1])
    assert terms["novelty"][4] == 1.0 and terms["novelty"][0] == pytest.approx(1 / np.sqrt(2))
    prio = trajectory_priorities(trajs, now)
    assert prio[1] > prio[0] > prio[2], "failure > mixed-group success > solved-group success"


def test_replay_from_the_store(store: ExperienceStore) -> None:
    for i, (task, err) in enumerate([("t1", None), ("t1", "boom"), ("t2", None)]):
        store.ingest(ExperienceEvent(kind="model_call", tenant="acme", session_id=f"s{i}", adapter_version="v3",
                                     messages=[{"role": "user", "content": f"task {task} attempt {i}"}],
                                     metadata={"task_id": task}))
        store.ingest(ExperienceEvent(kind="tool_step", tenant="acme", session_id=f"s{i}", tool_name="x",
                                     error=err, metadata={"task_id": task}))
    ts = store.tenant("acme")
    ts.add_reward(1.0, "agentscore", session_id="s0")
    buf = PrioritizedReplay(capacity=16)
    trajs = ts.trajectories()
    assert buf.add_trajectories(trajs, time.time()) == 3
    assert buf.add_trajectories(trajs, time.time()) == 0, "identical trajectories are deduplicated"
    batch = buf.sample(32, policy_version=3)
    assert set(batch.keys) <= {"s0", "s1", "s2"} and (batch.policy_versions == 3).all()
    counts = {k: batch.keys.count(k) for k in set(batch.keys)}
    assert counts.get("s1", 0) >= counts.get("s2", 0), "the failed attempt is replayed at least as often"
    assert policy_version_number(None) == 0 and policy_version_number("v12") == 12
    with pytest.raises(ConfigError):
        policy_version_number("best")
