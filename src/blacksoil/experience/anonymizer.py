"""Anonymization of experience events before storage, with Presidio configured to run fully offline.

What is protected, and what is not (each point has an attack test in tests/experience/test_anonymizer.py):
- Protected: e-mails, phone numbers, credit cards (Luhn), IBANs (mod-97), IPv4/IPv6, US SSNs, bitcoin
  addresses, API keys/tokens/passwords, employee/badge ids and plant serial numbers, in every string of
  messages, responses, tool arguments/results, errors and metadata (nested JSON included).
- Protected: token ids and logprobs of a part whose text contained PII are dropped (they would decode back
  to the PII); the learner re-tokenizes the anonymized text.
- Protected: no network call during analysis (no spaCy download, tldextract uses its bundled snapshot).
- Protected: reversible pseudonymization (`mode="encrypt"`) keeps the AES key outside the store.
- NOT protected: personal names, street addresses and free-text health data (no NER model offline), PII
  inside numbers that are not strings (ints in tool arguments), PII split across messages.
"""

from __future__ import annotations

import copy
import re
import secrets
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, Literal

from blacksoil.contracts import ExperienceEvent
from blacksoil.errors import ConfigError
from blacksoil.experience.presidio_offline import (
    AESCipher,
    AnalyzerEngine,
    AnonymizerEngine,
    OperatorConfig,
    RecognizerRegistry,
    RecognizerResult,
    SpacyNlpEngine,
    blank_english,
)
from blacksoil.experience.recognizers import custom_recognizers, is_part_number, presidio_recognizers

Mode = Literal["redact", "encrypt"]

ENTITIES = (
    "EMAIL_ADDRESS", "PHONE_NUMBER", "CREDIT_CARD", "IBAN_CODE", "IP_ADDRESS", "US_SSN", "CRYPTO",
    "API_KEY", "EMPLOYEE_ID", "SERIAL_NUMBER",
)
"""Entity types the anonymizer looks for (the structured PII of the evaluation set)."""


PSEUDONYM = re.compile(r"<([A-Z_]+):([A-Za-z0-9+/=_-]+)>")


def _encrypting(entity: str, key: bytes) -> Callable[[str], str]:
    return lambda s: f"<{entity}:{AESCipher.encrypt(key, s)}>"


class BlankSpacyNlpEngine(SpacyNlpEngine):
    """spaCy tokenizer only (`spacy.blank`): no model to download, enough tokens for context words."""

    def __init__(self) -> None:
        super().__init__(models=[{"lang_code": "en", "model_name": "blank:en"}])

    def load(self) -> None:
        self.nlp = {"en": blank_english()}  # type: ignore[assignment]


def build_analyzer() -> AnalyzerEngine:
    """An AnalyzerEngine with only model-free recognizers and a blank spaCy pipeline."""
    registry = RecognizerRegistry(supported_languages=["en"])
    for rec in presidio_recognizers() + custom_recognizers():
        registry.add_recognizer(rec)
    return AnalyzerEngine(registry=registry, nlp_engine=BlankSpacyNlpEngine(), supported_languages=["en"])


def load_or_create_key(path: Path) -> bytes:
    """The pseudonymization key (32 bytes AES) at `path`, created with mode 0600 when missing."""
    if path.exists():
        key = bytes.fromhex(path.read_text().strip())
        if len(key) != 32:
            raise ConfigError(f"pseudonymization key {path} holds {len(key)} bytes; expected 32 (64 hex chars)")
        return key
    path.parent.mkdir(parents=True, exist_ok=True)
    key = secrets.token_bytes(32)
    path.touch(mode=0o600)
    path.write_text(key.hex())
    return key


class Anonymizer:
    """Finds structured PII in text and replaces it (`<EMAIL_ADDRESS>`) or encrypts it reversibly."""

    def __init__(self, mode: Mode = "redact", key: bytes | None = None, score_threshold: float = 0.35,
                 entities: Iterable[str] = ENTITIES) -> None:
        if mode not in ("redact", "encrypt"):
            raise ConfigError(f"anonymizer mode {mode!r} is unknown; use 'redact' or 'encrypt'")
        if mode == "encrypt" and (key is None or len(key) not in (16, 24, 32)):
            raise ConfigError("mode 'encrypt' needs a 16/24/32-byte key; set experience.pseudonym_key_file")
        self.mode = mode
        self.key = key
        self.score_threshold = score_threshold
        self.entities = list(entities)
        self.analyzer = build_analyzer()
        self.engine = AnonymizerEngine()

    def find(self, text: str) -> list[RecognizerResult]:
        """PII spans in `text`, overlaps resolved (longest, then highest score, wins)."""
        if not text or not text.strip():
            return []
        found = self.analyzer.analyze(text=text, language="en", entities=self.entities,
                                      score_threshold=self.score_threshold)
        found = [r for r in found if not (r.entity_type == "PHONE_NUMBER" and is_part_number(text, r.start))]
        found.sort(key=lambda r: (-(r.end - r.start), -r.score))
        kept: list[RecognizerResult] = []
        for r in found:
            if all(r.end <= k.start or r.start >= k.end for k in kept):
                kept.append(r)
        return sorted(kept, key=lambda r: r.start)

    def anonymize_text(self, text: str) -> tuple[str, int]:
        """(anonymized text, number of PII spans replaced)."""
        found = self.find(text)
        if not found:
            return text, 0
        if self.mode == "encrypt":
            key = self.key
            assert key is not None
            ops = {e: OperatorConfig("custom", {"lambda": _encrypting(e, key)}) for e in self.entities}
        else:
            ops = {e: OperatorConfig("replace", {"new_value": f"<{e}>"}) for e in self.entities}
        return self.engine.anonymize(text=text, analyzer_results=found, operators=ops).text, len(found)  # type: ignore[arg-type]

    def anonymize_value(self, value: Any) -> tuple[Any, int]:
        """Anonymize every string inside nested dicts/lists (keys are kept as they are)."""
        if isinstance(value, str):
            return self.anonymize_text(value)
        if isinstance(value, dict):
            n = 0
            out_d: dict[Any, Any] = {}
            for k, v in value.items():
                out_d[k], c = self.anonymize_value(v)
                n += c
            return out_d, n
        if isinstance(value, list | tuple):
            n = 0
            out_l = []
            for v in value:
                nv, c = self.anonymize_value(v)
                out_l.append(nv)
                n += c
            return out_l, n
        return value, 0

    def anonymize_event(self, event: ExperienceEvent) -> ExperienceEvent:
        """A copy of `event` with PII removed; token ids of parts that held PII are dropped."""
        ev = copy.deepcopy(event)
        ev.messages, n_prompt = self.anonymize_value(ev.messages)
        ev.tools, n_tools = self.anonymize_value(ev.tools)
        ev.response, n_resp = self.anonymize_value(ev.response)
        ev.tool_arguments, n_args = self.anonymize_value(ev.tool_arguments)
        ev.error, n_err = self.anonymize_value(ev.error)
        ev.metadata, n_meta = self.anonymize_value(ev.metadata)
        dropped = []
        if n_prompt + n_tools and ev.prompt_token_ids is not None:
            ev.prompt_token_ids = None
            dropped.append("prompt_token_ids")
        if n_resp and (ev.completion_token_ids is not None or ev.completion_logprobs is not None):
            ev.completion_token_ids = None
            ev.completion_logprobs = None
            dropped.append("completion_token_ids")
        ev.metadata["pii_replaced"] = n_prompt + n_tools + n_resp + n_args + n_err + n_meta
        if dropped:
            ev.metadata["token_ids_dropped"] = dropped
        return ev

    def reveal(self, text: str) -> str:
        """Decrypt the `<TYPE:ciphertext>` pseudonyms of `encrypt` mode (needs the key; redact is one-way)."""
        if self.mode != "encrypt" or self.key is None:
            raise ConfigError("reveal needs mode 'encrypt' and its key; 'redact' is one-way")
        key = self.key
        return PSEUDONYM.sub(lambda m: AESCipher.decrypt(key, m.group(2)), text)
