"""The learner reads the experience store: opted-in tenants only, anonymized text only (re-tokenized where the
anonymizer dropped token ids), rewards joined from checkers, ratings and demonstrations, priorities fed back."""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from blacksoil.contracts import ExperienceEvent
from blacksoil.experience.anonymizer import Anonymizer
from blacksoil.experience.config import ExperienceConfig
from blacksoil.experience.replay_index import ReplayIndex
from blacksoil.experience.store import ExperienceStore, default_url
from blacksoil.factories.env_settings import EnvSettings
from blacksoil.learning.basemodel import BaseModelInfo
from blacksoil.learning.demos import demonstrations, demonstrations_on
from blacksoil.learning.samples import TrainSample
from blacksoil.learning.source import StoreExperience, engine_ids

EMAIL = "jane.doe@example.com"
PHONE = "+1 415 555 0142"


@pytest.fixture
def store(tmp_path: Path) -> Iterator[ExperienceStore]:
    st = ExperienceStore(default_url(tmp_path), anonymizer=Anonymizer())
    yield st
    st.close()


def _call(store: ExperienceStore, tokenizer: Any, tenant: str, sid: str, question: str, answer: str,
          reward: float | None = 1.0, task: str = "t1") -> None:
    ids = tokenizer(answer + "<|im_end|>", add_special_tokens=False).input_ids
    store.ingest(ExperienceEvent(kind="model_call", tenant=tenant, session_id=sid,
                                 messages=[{"role": "user", "content": question}],
                                 response={"role": "assistant", "content": answer}, completion_token_ids=ids))
    if reward is not None:
        store.tenant(tenant).add_reward(reward, "agentscore", session_id=sid, detail={"task_id": task})


def _source(store: ExperienceStore, tokenizer: Any, tenants: tuple[str, ...] = ()) -> StoreExperience:
    source = StoreExperience(store, ReplayIndex(store, ExperienceConfig()), tenants, "default", tokenizer)
    source.sync()
    return source


def _texts(tokenizer: Any, source: StoreExperience, objective: str = "sft") -> list[str]:
    drawn = source.draw(32, objective, 0)
    return [tokenizer.decode(s.prompt_ids + s.completion_ids) for s in drawn.samples]


def test_a_tenant_that_did_not_opt_in_never_trains(store: ExperienceStore, tokenizer: Any) -> None:
    _call(store, tokenizer, "acme", "a1", "What colour is the sky?", "Blue.")
    _call(store, tokenizer, "rival", "r1", "What is rival's secret?", "Rival's plan.")
    texts = _texts(tokenizer, _source(store, tokenizer, ("acme",)))
    assert not any("rival" in t.lower() for t in texts)


def test_an_opted_in_tenant_trains(store: ExperienceStore, tokenizer: Any) -> None:
    _call(store, tokenizer, "acme", "a1", "What colour is the sky?", "Blue.")
    texts = _texts(tokenizer, _source(store, tokenizer, ("acme",)))
    assert any("Blue." in t for t in texts)


def test_the_learners_own_tenant_always_trains(store: ExperienceStore, tokenizer: Any) -> None:
    _call(store, tokenizer, "default", "d1", "Practice question?", "Practice answer.")
    texts = _texts(tokenizer, _source(store, tokenizer))
    assert any("Practice answer." in t for t in texts)


def test_planted_pii_never_reaches_a_batch(store: ExperienceStore, tokenizer: Any) -> None:
    _call(store, tokenizer, "acme", "a1", f"Mail {EMAIL} about the order.", f"I will call {PHONE} instead.")
    texts = _texts(tokenizer, _source(store, tokenizer, ("acme",)))
    assert texts and not any(EMAIL in t or "555 0142" in t for t in texts)


def test_a_call_whose_ids_were_dropped_is_retokenized_from_the_anonymized_text(store: ExperienceStore,
                                                                               tokenizer: Any) -> None:
    _call(store, tokenizer, "acme", "a1", "Who do I call?", f"Call {PHONE} now.")
    drawn = _source(store, tokenizer, ("acme",)).draw(8, "sft", 0)
    assert drawn.retokenized == 1


def test_sft_keeps_only_successes(store: ExperienceStore, tokenizer: Any) -> None:
    _call(store, tokenizer, "acme", "good", "Question one?", "Right answer.", reward=1.0)
    _call(store, tokenizer, "acme", "bad", "Question two?", "Wrong answer.", reward=0.0)
    texts = _texts(tokenizer, _source(store, tokenizer, ("acme",)))
    assert not any("Wrong answer." in t for t in texts)


def test_sft_spends_no_draw_on_a_failure(store: ExperienceStore, tokenizer: Any) -> None:
    _call(store, tokenizer, "acme", "good", "Question one?", "Right answer.", reward=1.0)
    for i in range(4):
        _call(store, tokenizer, "acme", f"bad{i}", f"Question {i}?", "Wrong answer.", reward=0.0)
    drawn = _source(store, tokenizer, ("acme",)).draw(16, "sft", 0)
    assert {d.session_id for d in drawn.items.values()} == {"good"}


def test_grpo_pushes_away_from_the_failure_of_a_group(store: ExperienceStore, tokenizer: Any) -> None:
    _call(store, tokenizer, "acme", "good", "Same task?", "Right answer.", reward=1.0)
    _call(store, tokenizer, "acme", "bad", "Same task?", "Wrong answer.", reward=0.0)
    drawn = _source(store, tokenizer, ("acme",)).draw(32, "grpo", 0)
    signs = {tokenizer.decode(s.completion_ids).strip(): s.advantage > 0 for s in drawn.samples}
    assert signs == {"Right answer.<|im_end|>": True, "Wrong answer.<|im_end|>": False}


def test_a_user_rating_makes_outside_traffic_trainable(store: ExperienceStore, tokenizer: Any) -> None:
    _call(store, tokenizer, "acme", "chat-1", "Summarise the memo.", "The memo says ship Friday.", reward=None)
    store.tenant("acme").add_reward(1.0, "feedback", session_id="chat-1")
    texts = _texts(tokenizer, _source(store, tokenizer, ("acme",)))
    assert any("ship Friday" in t for t in texts)


def test_the_draw_says_which_tenants_trained(store: ExperienceStore, tokenizer: Any) -> None:
    _call(store, tokenizer, "acme", "a1", "What colour is the sky?", "Blue.")
    drawn = _source(store, tokenizer, ("acme",)).draw(8, "sft", 0)
    assert drawn.provenance()["tenants"] == ["acme"]


def test_training_loss_becomes_the_items_priority(store: ExperienceStore, tokenizer: Any) -> None:
    _call(store, tokenizer, "acme", "a1", "What colour is the sky?", "Blue.")
    source = _source(store, tokenizer, ("acme",))
    drawn = source.draw(4, "sft", 0)
    source.update_priorities({key: 3.25 for key in drawn.items}, drawn)
    assert source.index.priorities() == {("acme", "a1"): 3.25}


def test_demonstrations_enter_the_store_tagged(store: ExperienceStore, tokenizer: Any,
                                               env_settings: EnvSettings) -> None:
    source = _source(store, tokenizer)
    source.add_demonstrations(demonstrations(tokenizer, ["tools-basic"], tasks_per_suite=2, settings=env_settings))
    assert {r["source"] for r in store.tenant("default").rewards()} == {"demonstration"}


def test_demonstrations_are_stored_once(store: ExperienceStore, tokenizer: Any, env_settings: EnvSettings) -> None:
    source = _source(store, tokenizer)
    demos = demonstrations(tokenizer, ["tools-basic"], tasks_per_suite=2, settings=env_settings)
    source.add_demonstrations(demos)
    assert source.add_demonstrations(demos) == 0


def test_demonstrations_train_and_are_counted_apart(store: ExperienceStore, tokenizer: Any,
                                                    env_settings: EnvSettings) -> None:
    source = _source(store, tokenizer)
    source.add_demonstrations(demonstrations(tokenizer, ["tools-basic"], tasks_per_suite=2, settings=env_settings))
    source.sync()
    assert set(source.draw(16, "sft", 0).provenance()["samples_by_source"]) == {"demonstration"}


def test_demonstrations_built_on_other_cores_are_the_same(base_info: BaseModelInfo, tokenizer: Any,
                                                          env_settings: EnvSettings) -> None:
    """Under `up --learner` a pinned child process builds them (off serving's cores and the gateway's GIL)."""
    def key(attempts: list[Any]) -> list[tuple[str, list[list[int]]]]:
        return [(a.task_id, [list(c.completion_token_ids) for c in a.calls]) for a in attempts]

    here = demonstrations_on((), base_info, ["tools-basic"], settings=env_settings, tokenizer=tokenizer)
    child = demonstrations_on((0,), base_info, ["tools-basic"], settings=env_settings)
    assert key(child) == key(here)


def test_a_call_that_stopped_on_end_of_turn_is_closed_with_it() -> None:
    call = {"completion_token_ids": [5, 6], "metadata": {"finish_reason": "stop"}, "usage": {"completion_tokens": 3}}
    assert engine_ids(call, 2) == (5, 6, 2)


def test_a_call_cut_at_max_tokens_is_not_closed() -> None:
    call = {"completion_token_ids": [5, 6], "metadata": {"finish_reason": "length"}, "usage": {"completion_tokens": 2}}
    assert engine_ids(call, 2) == (5, 6)


def test_ids_that_already_end_the_turn_stay_as_they_are() -> None:
    call = {"completion_token_ids": [5, 2], "metadata": {"finish_reason": "stop"}, "usage": {"completion_tokens": 2}}
    assert engine_ids(call, 2) == (5, 2)


@pytest.fixture
def stopped_call(store: ExperienceStore, tokenizer: Any) -> tuple[list[int], TrainSample]:
    """A rewarded engine call stored as llama.cpp reports it after stopping on end of turn (no id for that token),
    and the sample the learner draws from it."""
    ids = tokenizer("Blue.", add_special_tokens=False).input_ids
    store.ingest(ExperienceEvent(kind="model_call", tenant="default", session_id="s1",
                                 messages=[{"role": "user", "content": "What colour is the sky?"}],
                                 response={"role": "assistant", "content": "Blue."}, completion_token_ids=ids,
                                 completion_logprobs=[-0.5] * len(ids), usage={"completion_tokens": len(ids) + 1},
                                 metadata={"finish_reason": "stop"}))
    store.tenant("default").add_reward(1.0, "agentscore", session_id="s1", detail={"task_id": "t1"})
    return ids, _source(store, tokenizer).draw(4, "sft", 0).samples[0]


def test_a_learned_engine_call_ends_with_end_of_turn(stopped_call: tuple[list[int], TrainSample],
                                                     tokenizer: Any) -> None:
    ids, sample = stopped_call
    assert sample.completion_ids == (*ids, tokenizer.convert_tokens_to_ids("<|im_end|>"))


def test_the_appended_end_of_turn_has_an_unknown_behaviour_logprob(
        stopped_call: tuple[list[int], TrainSample]) -> None:
    ids, sample = stopped_call
    behaviour = sample.behaviour_logprobs
    assert behaviour is not None and behaviour[:-1] == (-0.5,) * len(ids) and math.isnan(behaviour[-1])
