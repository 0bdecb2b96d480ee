"""The persistent replay index: rewarded sessions of opted-in tenants, priorities that survive a restart,
bounded size with the stalest evicted, and purge that takes a tenant's items with it."""

from __future__ import annotations

import time

import pytest

from blacksoil.contracts import ExperienceEvent
from blacksoil.errors import NotFoundError
from blacksoil.experience.config import ExperienceConfig
from blacksoil.experience.replay_index import ReplayIndex
from blacksoil.experience.store import ExperienceStore


def _session(store: ExperienceStore, tenant: str, sid: str, *, version: str | None = None, task: str = "t1",
             reward: float | None = 1.0, source: str = "agentscore", at: float | None = None) -> None:
    store.ingest(ExperienceEvent(kind="model_call", tenant=tenant, session_id=sid, adapter_version=version,
                                 messages=[{"role": "user", "content": f"question of {sid}"}],
                                 response={"role": "assistant", "content": f"answer of {sid}"},
                                 completion_token_ids=[1, 2, 3], created_at=at or time.time()))
    if reward is not None:
        store.tenant(tenant).add_reward(reward, source, session_id=sid, detail={"task_id": task})


def test_only_rewarded_sessions_of_synced_tenants_become_items(store: ExperienceStore) -> None:
    _session(store, "alpha", "a1")
    _session(store, "alpha", "a2", reward=None)  # no outcome yet: not trainable
    _session(store, "beta", "b1")  # beta did not opt in
    index = ReplayIndex(store, ExperienceConfig())
    index.sync(["alpha"])
    assert set(index.priorities()) == {("alpha", "a1")}


def test_a_later_reward_makes_a_session_an_item(store: ExperienceStore) -> None:
    _session(store, "alpha", "a1", reward=None)
    index = ReplayIndex(store, ExperienceConfig())
    index.sync(["alpha"])
    store.tenant("alpha").add_reward(-1.0, "feedback", session_id="a1")
    index.sync(["alpha"])
    assert list(index.priorities()) == [("alpha", "a1")]


def test_a_sync_reads_each_reward_once(store: ExperienceStore) -> None:
    _session(store, "alpha", "a1")
    index = ReplayIndex(store, ExperienceConfig())
    index.sync(["alpha"])
    assert index.sync(["alpha"]) == 0


def test_priorities_and_cursor_survive_a_restart(store: ExperienceStore) -> None:
    for sid in ("a1", "a2", "a3"):
        _session(store, "alpha", sid, reward=1.0 if sid != "a3" else 0.0)
    first = ReplayIndex(store, ExperienceConfig())
    first.sync(["alpha"])
    draws = first.sample(4, 0, ["alpha"])
    first.update_priorities({draws[0].item_id: 7.5})
    reopened = ReplayIndex(ExperienceStore(store.url, anonymizer=store.anonymizer), ExperienceConfig())
    assert reopened.priorities() == first.priorities()


def test_a_restarted_index_does_not_reread_old_rewards(store: ExperienceStore) -> None:
    _session(store, "alpha", "a1")
    ReplayIndex(store, ExperienceConfig()).sync(["alpha"])
    assert ReplayIndex(store, ExperienceConfig()).sync(["alpha"]) == 0


def test_updated_priorities_steer_sampling(store: ExperienceStore) -> None:
    for sid in ("a1", "a2"):
        _session(store, "alpha", sid)
    index = ReplayIndex(store, ExperienceConfig(replay_alpha=1.0))
    index.sync(["alpha"])
    ids = {d.session_id: d.item_id for d in index.sample(64, 0, ["alpha"])}
    index.update_priorities({ids["a1"]: 100.0, ids["a2"]: 0.0})
    drawn = [d.session_id for d in index.sample(200, 0, ["alpha"])]
    assert drawn.count("a1") > 190


def test_the_stalest_items_are_evicted_past_capacity(store: ExperienceStore) -> None:
    now = time.time()
    _session(store, "alpha", "old", version="v1", at=now - 100)
    _session(store, "alpha", "mid", version="v2", at=now - 50)
    _session(store, "alpha", "new", version="v3", at=now)
    index = ReplayIndex(store, ExperienceConfig(replay_capacity=2))
    index.sync(["alpha"])
    assert {k[1] for k in index.priorities()} == {"mid", "new"}


def test_items_too_old_for_the_served_version_are_not_drawn(store: ExperienceStore) -> None:
    _session(store, "alpha", "stale", version="v1")
    _session(store, "alpha", "fresh", version="v6")
    index = ReplayIndex(store, ExperienceConfig(replay_max_staleness=2))
    index.sync(["alpha"])
    assert {d.session_id for d in index.sample(32, 7, ["alpha"])} == {"fresh"}


def test_demonstrations_never_go_stale(store: ExperienceStore) -> None:
    _session(store, "alpha", "demo", source="demonstration")
    index = ReplayIndex(store, ExperienceConfig(replay_max_staleness=1))
    index.sync(["alpha"])
    assert {d.session_id for d in index.sample(4, 9, ["alpha"])} == {"demo"}


def test_sampling_reads_only_the_named_tenants(store: ExperienceStore) -> None:
    _session(store, "alpha", "a1")
    _session(store, "beta", "b1")
    index = ReplayIndex(store, ExperienceConfig())
    index.sync(["alpha", "beta"])
    assert {d.tenant_id for d in index.sample(32, 0, ["beta"])} == {"beta"}


def test_a_draw_above_a_reward_leaves_the_failures_out(store: ExperienceStore) -> None:
    _session(store, "alpha", "won")
    for i in range(5):
        _session(store, "alpha", f"lost{i}", reward=0.0)
    index = ReplayIndex(store, ExperienceConfig())
    index.sync(["alpha"])
    assert {d.session_id for d in index.sample(32, 0, ["alpha"], min_reward=1.0)} == {"won"}


def test_a_draw_above_a_reward_with_nothing_that_high_says_so(store: ExperienceStore) -> None:
    _session(store, "alpha", "lost", reward=0.0)
    index = ReplayIndex(store, ExperienceConfig())
    index.sync(["alpha"])
    with pytest.raises(NotFoundError, match="rewarded at least 1"):
        index.sample(1, 0, ["alpha"], min_reward=1.0)


def test_an_empty_index_says_what_to_do(store: ExperienceStore) -> None:
    with pytest.raises(NotFoundError, match="collect rewarded experience"):
        ReplayIndex(store, ExperienceConfig()).sample(1, 0, ["alpha"])


def test_purge_removes_the_tenants_items(store: ExperienceStore) -> None:
    _session(store, "alpha", "a1")
    index = ReplayIndex(store, ExperienceConfig())
    index.sync(["alpha"])
    store.tenant("alpha").purge()
    assert index.priorities() == {}


def test_a_checker_verdict_outranks_a_later_rating(store: ExperienceStore) -> None:
    _session(store, "alpha", "a1", reward=1.0)
    index = ReplayIndex(store, ExperienceConfig())
    index.sync(["alpha"])
    store.tenant("alpha").add_reward(-1.0, "feedback", session_id="a1")
    index.sync(["alpha"])
    assert [d.reward for d in index.sample(1, 0, ["alpha"])] == [1.0]
