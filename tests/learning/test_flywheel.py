"""The flywheel end to end on the running platform: outside traffic of two tenants (one opted in) with planted PII
and user ratings goes through the gateway into the store; one learning round reads it back from there. The
adapter it publishes records that only the opted-in tenant (and the learner's own practice) trained it, and no
planted value reached a training batch."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from blacksoil.config import Settings, load_settings

RUN = uuid.uuid4().hex[:6]
TENANTS = {f"acme-key-{RUN}-0123456789": f"acme-{RUN}", f"rival-key-{RUN}-0123456789": f"rival-{RUN}",
           f"learn-key-{RUN}-0123456789": f"learner-{RUN}"}
ACME, RIVAL, LEARNER = list(TENANTS)
PLANTED = ("maria.lopez@example.org", "+1 212 555 0199")


@pytest.fixture(scope="module")
def flywheel_settings(blacksoil_home: Path) -> Settings:
    return load_settings(platform={"api_keys": TENANTS}, agents={"api_key": LEARNER},
                         learning={"train_tenants": [f"acme-{RUN}"], "batch_size": 2, "max_seq_len": 512},
                         serving={"threads": 1, "slots": 2, "concurrency": 2, "ctx": 2048, "default_max_tokens": 24},
                         agentscore={"step_budget": 2})


@pytest.fixture(scope="module")
def platform(flywheel_settings: Settings) -> Iterator[Any]:
    from blacksoil.platform import make_sink, running_platform

    sink = make_sink(flywheel_settings)
    try:
        with running_platform(flywheel_settings, sink=sink) as gw:
            yield gw
    finally:
        sink.close()


def _chat(gw: Any, key: str, session: str, text: str) -> None:
    client = openai.OpenAI(base_url=gw.openai_base_url, api_key=key, max_retries=0, timeout=120)
    client.chat.completions.create(model=gw.model, messages=[{"role": "user", "content": text}], max_tokens=24,
                                   user=session)


def _rate(gw: Any, key: str, session: str, value: float) -> None:
    r = httpx.post(gw.url + "/v1/feedback", json={"session_id": session, "value": value},
                   headers={"Authorization": f"Bearer {key}"}, timeout=30)
    assert r.status_code == 200, r.text


@pytest.fixture(scope="module")
def learned(platform: Any, flywheel_settings: Settings) -> Any:
    """Outside traffic with ratings, then one real learning round on the running platform."""
    from blacksoil.learning.context import LearnerContext
    from blacksoil.learning.loop import Learner, LoopOptions

    for i in range(2):
        _chat(platform, ACME, f"acme-chat-{i}", f"Email {PLANTED[0]} or call {PLANTED[1]}: what is 2 + {i}?")
        _rate(platform, ACME, f"acme-chat-{i}", 1.0)
        _chat(platform, RIVAL, f"rival-chat-{i}", f"Rival secret {i}: what is 3 + {i}?")
        _rate(platform, RIVAL, f"rival-chat-{i}", 1.0)
    learner = Learner(platform, platform.sink.store, LoopOptions(suites=("tools-basic",), attempts=1,
                                                                 tasks_per_suite=1, gate_tasks=1, steps=2,
                                                                 demos=False),
                      LearnerContext.from_settings(flywheel_settings))
    result = learner.run_round(1)
    return learner, result


def test_the_round_trained_on_stored_outside_traffic(learned: Any) -> None:
    learner, result = learned
    assert result.samples > 0 and learner.provenance["samples_by_source"].get("feedback", 0) > 0


def test_the_adapter_records_that_only_opted_in_tenants_trained_it(learned: Any) -> None:
    learner, result = learned
    tenants = set(learner.store.provenance(result.candidate)["tenants"])
    assert tenants <= {f"acme-{RUN}", f"learner-{RUN}"} and f"acme-{RUN}" in tenants


def test_no_planted_pii_reached_a_training_batch(learned: Any) -> None:
    learner, _ = learned
    texts = [learner.tokenizer.decode(s.prompt_ids + s.completion_ids) for s in learner.last_batch]
    assert texts and not any(p in t or "555 0199" in t for t in texts for p in PLANTED)


def test_the_rival_tenants_rows_never_reached_a_batch(learned: Any) -> None:
    learner, _ = learned
    assert not any("Rival secret" in learner.tokenizer.decode(s.prompt_ids) for s in learner.last_batch)
