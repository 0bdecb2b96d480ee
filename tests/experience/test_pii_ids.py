"""PII outside message text (issue 22, finding 5): ids, keys and SSN forms Presidio missed are never stored raw.

Identifiers that hold PII are stored as a keyed hash, the same for every event, so sessions still group and
lookups by the raw id still work.
"""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select

from blacksoil.contracts import ExperienceEvent
from blacksoil.experience.anonymizer import Anonymizer
from blacksoil.experience.models import ModelCall, Reward
from blacksoil.experience.models import Session as SessionRow
from blacksoil.experience.store import ExperienceStore

PII_IDS = ["anna.smith@gmail.com", "+1 415 555 0134", "ssn 536-22-8726", "4111 1111 1111 1111"]


def _call(session_id: str, tenant: str = "acme", text: str = "hello") -> ExperienceEvent:
    return ExperienceEvent(kind="model_call", tenant=tenant, session_id=session_id,
                           messages=[{"role": "user", "content": text}])


def _column(store: ExperienceStore, column: Any) -> list[Any]:
    with store.session() as s:
        return list(s.scalars(select(column)))


@pytest.mark.parametrize("session_id", PII_IDS)
def test_pii_session_ids_never_reach_model_calls(store: ExperienceStore, session_id: str) -> None:
    store.ingest(_call(session_id))
    assert session_id not in _column(store, ModelCall.session_id)


@pytest.mark.parametrize("session_id", PII_IDS)
def test_pii_session_ids_never_reach_sessions(store: ExperienceStore, session_id: str) -> None:
    store.ingest(_call(session_id))
    assert session_id not in _column(store, SessionRow.id)


def test_pii_session_ids_still_group(store: ExperienceStore) -> None:
    store.ingest_many([_call("anna.smith@gmail.com"), _call("anna.smith@gmail.com", text="again")])
    assert len(set(_column(store, ModelCall.session_id))) == 1


def test_lookup_by_the_raw_id_finds_the_session(store: ExperienceStore) -> None:
    store.ingest_many([_call("anna.smith@gmail.com"), _call("anna.smith@gmail.com", text="again")])
    assert len(store.tenant("acme").model_calls(session_id="anna.smith@gmail.com")) == 2


def test_feedback_on_a_raw_pii_session_id_lands(store: ExperienceStore) -> None:
    store.ingest(_call("anna.smith@gmail.com"))
    assert store.tenant("acme").add_reward(1.0, "feedback", session_id="anna.smith@gmail.com")


def test_plain_session_ids_are_kept(store: ExperienceStore) -> None:
    store.ingest(_call("run-42-turn-3"))
    assert _column(store, ModelCall.session_id) == ["run-42-turn-3"]


def test_pii_tenant_ids_are_hashed(store: ExperienceStore) -> None:
    store.ingest(_call("s1", tenant="bob@example.com"))
    assert "bob@example.com" not in _column(store, ModelCall.tenant_id)


def test_idempotency_keys_are_stored_hashed(store: ExperienceStore) -> None:
    store.ingest(_call("s1"))
    store.tenant("acme").add_reward(1.0, "feedback", session_id="s1", dedup_key="feedback:bob@example.com")
    assert not any("bob@example.com" in k for k in _column(store, Reward.dedup_key))


def test_hashed_idempotency_keys_still_deduplicate(store: ExperienceStore) -> None:
    store.ingest(_call("s1"))
    ts = store.tenant("acme")
    ts.add_reward(1.0, "feedback", session_id="s1", dedup_key="feedback:k1")
    assert not ts.add_reward(1.0, "feedback", session_id="s1", dedup_key="feedback:k1")


def test_pseudonyms_are_stable_across_restarts(tmp_path: Any) -> None:
    from blacksoil.experience.anonymizer import load_or_create_key

    key = load_or_create_key(tmp_path / "id.key")
    a, b = Anonymizer(id_key=key), Anonymizer(id_key=load_or_create_key(tmp_path / "id.key"))
    assert a.pseudonymize_id("anna.smith@gmail.com") == b.pseudonymize_id("anna.smith@gmail.com")


@pytest.mark.parametrize("text", ["my ssn 536228726 thanks", "SSN: 123-45-6789", "it is 123-45-6789 ok"])
def test_ssn_forms_presidio_missed_are_redacted(anonymizer: Anonymizer, text: str) -> None:
    assert anonymizer.anonymize_text(text)[0].count("<US_SSN>") == 1


def test_deeply_nested_messages_are_anonymized_not_dropped(anonymizer: Anonymizer) -> None:
    deep: Any = "mail anna.smith@gmail.com"
    for _ in range(900):
        deep = [deep]
    ev = anonymizer.anonymize_event(ExperienceEvent(kind="model_call", messages=[{"role": "user", "content": deep}]))
    assert "anna.smith" not in repr(ev.messages)
