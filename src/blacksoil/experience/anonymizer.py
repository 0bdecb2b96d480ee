"""Anonymization of experience events before storage, with Presidio configured to run fully offline.

What is protected, and what is not (each point has an attack test in tests/experience/test_anonymizer.py):
- Protected: e-mails, phone numbers, credit cards (Luhn), IBANs (mod-97), IPv4/IPv6, US SSNs, bitcoin
  addresses, API keys/tokens/passwords, employee/badge ids and plant serial numbers, in every string of
  messages, responses, tool arguments/results, errors and metadata (nested JSON included).
- Protected: identifiers (tenant, session and request ids, from X-Session-Id / `user` / X-Tenant) that hold
  PII are stored as a keyed hash, the same for every event, so sessions still group; idempotency keys are
  stored only as keyed hashes. Nesting deeper than MAX_DEPTH is replaced whole, never skipped.
- Protected: token ids and logprobs of a part whose text contained PII are dropped (they would decode back
  to the PII); the learner re-tokenizes the anonymized text.
- Protected: no network call during analysis (no spaCy download, tldextract uses its bundled snapshot).
- Protected: reversible pseudonymization (`mode="encrypt"`) keeps the AES key outside the store.
- NOT protected: personal names, street addresses and free-text health data (no NER model offline), PII
  inside numbers that are not strings (ints in tool arguments), PII split across messages.
"""

from __future__ import annotations

import copy
import hashlib
import hmac
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
from blacksoil.experience.recognizers import custom_recognizers, is_measurement, is_part_number, presidio_recognizers

Mode = Literal["redact", "encrypt"]

ENTITIES = (
    "EMAIL_ADDRESS", "PHONE_NUMBER", "CREDIT_CARD", "IBAN_CODE", "IP_ADDRESS", "US_SSN", "CRYPTO",
    "API_KEY", "EMPLOYEE_ID", "SERIAL_NUMBER",
)
"""Entity types the anonymizer looks for (the structured PII of the evaluation set)."""


PSEUDONYM = re.compile(r"<([A-Z_]+):([A-Za-z0-9+/=_-]+)>")
MAX_DEPTH = 64
"""Deepest nesting anonymized; deeper values are replaced whole (recursing further hit Python's limit and the
event was dropped)."""
TOO_DEEP = "<NESTED_TOO_DEEP>"


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
                 entities: Iterable[str] = ENTITIES, id_key: bytes | None = None) -> None:
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
        # Keyed, so a pseudonym cannot be reversed by hashing guesses; persisted by from_settings so that the
        # same identifier maps to the same pseudonym across restarts (sessions keep grouping).
        self.id_key = id_key or secrets.token_bytes(32)
        self._ids: dict[str, str] = {}

    def pseudonymize_id(self, value: str | None) -> str | None:
        """An identifier (session, tenant, request id) as stored: unchanged unless it holds PII, then a keyed hash.

        Deterministic, so every event of a session still groups and lookups by the raw id still find it.
        """
        if not value:
            return value
        out = self._ids.get(value)
        if out is None:
            out = "anon-" + self._mac(value)[:32] if self.find(value) else value
            if len(self._ids) < 100_000:
                self._ids[value] = out
        return out

    def hash_key(self, value: str) -> str:
        """A keyed hash of a free-text key that is only ever compared (idempotency keys): never stored raw."""
        return "h-" + self._mac(value)[:48]

    def _mac(self, value: str) -> str:
        return hmac.new(self.id_key, value.encode("utf-8", "surrogatepass"), hashlib.sha256).hexdigest()

    def find(self, text: str) -> list[RecognizerResult]:
        """PII spans in `text`, overlaps resolved (longest, then highest score, wins)."""
        if not text or not text.strip():
            return []
        found = self.analyzer.analyze(text=text, language="en", entities=self.entities,
                                      score_threshold=self.score_threshold)
        found = [r for r in found if not (r.entity_type == "PHONE_NUMBER" and (
            is_part_number(text, r.start) or is_measurement(text, r.start, r.end)))]
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

    def anonymize_value(self, value: Any, depth: int = 0) -> tuple[Any, int]:
        """Anonymize every string inside nested dicts/lists (keys are kept as they are)."""
        if isinstance(value, str):
            return self.anonymize_text(value)
        if isinstance(value, dict | list | tuple) and depth >= MAX_DEPTH:
            return TOO_DEEP, 1
        if isinstance(value, dict):
            n = 0
            out_d: dict[Any, Any] = {}
            for k, v in value.items():
                out_d[k], c = self.anonymize_value(v, depth + 1)
                n += c
            return out_d, n
        if isinstance(value, list | tuple):
            n = 0
            out_l = []
            for v in value:
                nv, c = self.anonymize_value(v, depth + 1)
                out_l.append(nv)
                n += c
            return out_l, n
        return value, 0

    def anonymize_event(self, event: ExperienceEvent) -> ExperienceEvent:
        """A copy of `event` with PII removed; token ids of parts that held PII are dropped."""
        # Shallow: every field that can hold text is rebuilt below; a deepcopy recursed on deep JSON.
        ev = copy.copy(event)
        ev.messages, n_prompt = self.anonymize_value(ev.messages)
        ev.tools, n_tools = self.anonymize_value(ev.tools)
        ev.response, n_resp = self.anonymize_value(ev.response)
        ev.tool_arguments, n_args = self.anonymize_value(ev.tool_arguments)
        ev.error, n_err = self.anonymize_value(ev.error)
        ev.metadata, n_meta = self.anonymize_value(ev.metadata)
        ids = (ev.tenant, ev.session_id, ev.request_id)
        ev.session_id, ev.request_id = self.pseudonymize_id(ev.session_id), self.pseudonymize_id(ev.request_id)
        ev.tenant = self.pseudonymize_id(ev.tenant) or ev.tenant
        n_meta += sum(a != b for a, b in zip(ids, (ev.tenant, ev.session_id, ev.request_id), strict=True))
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
