"""Attack tests of the anonymizer: every protected point gets PII through, and must not see it survive."""

from __future__ import annotations

import os
import socket
import stat
from pathlib import Path

import pytest

from blacksoil.contracts import ExperienceEvent
from blacksoil.errors import ConfigError
from blacksoil.experience.anonymizer import Anonymizer, load_or_create_key

PII = {
    "EMAIL_ADDRESS": "anna.berg@northwind.com",
    "PHONE_NUMBER": "+1 415-867-2291",
    "CREDIT_CARD": "4111 1111 1111 1111",
    "IBAN_CODE": "DE89 3704 0044 0532 0130 00",
    "IP_ADDRESS": "203.0.113.77",
    "US_SSN": "536-22-8741",
    "CRYPTO": "1BoatSLRHtKNngkdXEeobR76b53LETtpyT",
    "API_KEY": "sk-proj-Abc123Def456Ghi789Jkl012Mno345Pqr678",
    "EMPLOYEE_ID": "EMP-204118",
    "SERIAL_NUMBER": "PLT03-CNC-00412",
}


@pytest.mark.parametrize("entity", sorted(PII))
def test_each_structured_entity_is_redacted(anonymizer: Anonymizer, entity: str) -> None:
    text = f"note for the shift: {PII[entity]} (see ticket)"
    out, n = anonymizer.anonymize_text(text)
    assert PII[entity] not in out
    assert f"<{entity}>" in out
    assert n == 1


def test_secrets_after_assignments_and_bearer(anonymizer: Anonymizer) -> None:
    text = "Authorization: Bearer abc.DEF-123_456.xyz7890qq\npassword=hunter2hunter2 aws_secret_access_key = " \
           "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
    out, _ = anonymizer.anonymize_text(text)
    for secret in ("abc.DEF-123_456.xyz7890qq", "hunter2hunter2", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"):
        assert secret not in out


def test_part_numbers_that_look_like_phones_are_kept(anonymizer: Anonymizer) -> None:
    text = "Reorder PN 212-448-9021 and SKU 415-867-2291 for press 4."
    out, n = anonymizer.anonymize_text(text)
    assert out == text and n == 0


@pytest.mark.parametrize("text", ["furnace at 78.12345678 C", "value 193.3333333333",
                                  "round(40.166666667 * 4.1, 2)"])
def test_decimal_readings_are_not_phone_numbers(anonymizer: Anonymizer, text: str) -> None:
    assert anonymizer.anonymize_text(text) == (text, 0)


@pytest.mark.parametrize("phone", ["415.555.0142", "+1 415 555 0142", "call 415-555-0142"])
def test_phone_numbers_beside_the_decimal_rule_are_still_found(anonymizer: Anonymizer, phone: str) -> None:
    out, _ = anonymizer.anonymize_text(f"reach me at {phone} today")
    assert "555" not in out


def test_event_every_field_and_nested_json(anonymizer: Anonymizer) -> None:
    ev = ExperienceEvent(
        kind="tool_step", tenant="t", tool_name="crm.update",
        tool_arguments={"contact": {"emails": [PII["EMAIL_ADDRESS"]], "phone": PII["PHONE_NUMBER"]}},
        response={"content": f"card {PII['CREDIT_CARD']} charged"},
        error=f"timeout talking to {PII['IP_ADDRESS']}",
        metadata={"note": f"badge {PII['EMPLOYEE_ID']}"},
    )
    out = anonymizer.anonymize_event(ev)
    blob = repr(out.to_dict())
    for value in PII.values():
        assert value not in blob
    assert out.metadata["pii_replaced"] == 5
    assert ev.tool_arguments is not None and PII["EMAIL_ADDRESS"] in repr(ev.tool_arguments), "input not mutated"


def test_token_ids_of_parts_with_pii_are_dropped(anonymizer: Anonymizer) -> None:
    ev = ExperienceEvent(kind="model_call", messages=[{"role": "user", "content": f"mail {PII['EMAIL_ADDRESS']}"}],
                         response={"content": "done"}, prompt_token_ids=[1, 2, 3], completion_token_ids=[4],
                         completion_logprobs=[-0.1])
    out = anonymizer.anonymize_event(ev)
    assert out.prompt_token_ids is None
    assert out.completion_token_ids == [4] and out.completion_logprobs == [-0.1]
    assert out.metadata["token_ids_dropped"] == ["prompt_token_ids"]
    clean = anonymizer.anonymize_event(ExperienceEvent(kind="model_call", messages=[{"role": "user", "content": "hi"}],
                                                       prompt_token_ids=[1, 2]))
    assert clean.prompt_token_ids == [1, 2]


def test_no_network_during_construction_and_analysis(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"network access attempted: {args}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    fresh = Anonymizer()
    out, _ = fresh.anonymize_text("write to jonas@mueller-gmbh.de or lisa@some-new-domain.xyz")
    assert "jonas@" not in out and "lisa@" not in out


def test_encrypt_mode_is_reversible_with_the_key(tmp_path: Path) -> None:
    key_file = tmp_path / "keys" / "pii.key"
    key = load_or_create_key(key_file)
    assert stat.S_IMODE(os.stat(key_file).st_mode) == 0o600
    assert load_or_create_key(key_file) == key
    enc = Anonymizer(mode="encrypt", key=key)
    text = f"call {PII['PHONE_NUMBER']} or mail {PII['EMAIL_ADDRESS']}"
    out, n = enc.anonymize_text(text)
    assert n == 2 and PII["PHONE_NUMBER"] not in out and "<PHONE_NUMBER:" in out
    assert enc.reveal(out) == text
    other = Anonymizer(mode="encrypt", key=bytes(32))
    try:
        revealed: str | None = other.reveal(out)
    except ValueError:
        revealed = None
    assert revealed != text


def test_bad_configuration_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="mode 'encrypt' needs"):
        Anonymizer(mode="encrypt")
    with pytest.raises(ConfigError, match="unknown"):
        Anonymizer(mode="hash")  # type: ignore[arg-type]
    bad = tmp_path / "k"
    bad.write_text("abcd")
    with pytest.raises(ConfigError, match="expected 32"):
        load_or_create_key(bad)


def test_known_limitation_names_are_not_detected(anonymizer: Anonymizer) -> None:
    """Documented gap: without an NER model, personal names pass through (see the module docstring)."""
    out, n = anonymizer.anonymize_text("Marco Rossi approved the order")
    assert n == 0 and "Marco Rossi" in out
