"""Offline PII recognizers: Presidio's regex/checksum recognizers plus blacksoil's own (keys, ids, serials).

No spaCy model and no network: the e-mail check uses tldextract's bundled suffix snapshot.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import tldextract

from blacksoil.experience.presidio_offline import (
    CreditCardRecognizer,
    CryptoRecognizer,
    EmailRecognizer,
    EntityRecognizer,
    IbanRecognizer,
    IpRecognizer,
    NlpArtifacts,
    PhoneRecognizer,
    RecognizerResult,
    UsSsnRecognizer,
)


@lru_cache(maxsize=1)
def offline_tld_extractor() -> tldextract.TLDExtract:
    """A TLDExtract that never fetches the public suffix list: bundled snapshot, no cache dir."""
    return tldextract.TLDExtract(suffix_list_urls=(), cache_dir=None, fallback_to_snapshot=True)


class OfflineEmailRecognizer(EmailRecognizer):
    """Presidio's e-mail recognizer with the domain check done against the bundled suffix list."""

    def validate_result(self, pattern_text: str) -> bool:
        return offline_tld_extractor()(pattern_text).fqdn != ""


@dataclass(frozen=True)
class Rule:
    """One regex rule; `group` selects the part of the match that is the secret."""

    regex: str
    score: float
    group: int = 0


class RegexRecognizer(EntityRecognizer):
    """Regex recognizer whose rules can mark a capture group (e.g. the value after `password=`)."""

    def __init__(self, entity: str, rules: list[Rule], name: str) -> None:
        self.rules = [(re.compile(r.regex), r) for r in rules]
        super().__init__(supported_entities=[entity], name=name, supported_language="en")

    def load(self) -> None:
        """Nothing to load: the rules are compiled in the constructor."""

    def analyze(self, text: str, entities: list[str], nlp_artifacts: NlpArtifacts | None = None) -> list[Any]:
        entity = self.supported_entities[0]
        out: list[RecognizerResult] = []
        for pattern, rule in self.rules:
            for m in pattern.finditer(text):
                start, end = m.span(rule.group)
                if end > start:
                    out.append(RecognizerResult(entity, start, end, rule.score))
        return out


API_KEY_RULES = [
    Rule(r"\bsk-(?:proj-|ant-|live-|test-)?[A-Za-z0-9_\-]{20,}", 0.9),  # OpenAI / Anthropic / Stripe style
    Rule(r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b", 0.9),  # AWS access key id
    Rule(r"\bgh[pousr]_[A-Za-z0-9]{30,}\b", 0.9),  # GitHub tokens
    Rule(r"\bglpat-[A-Za-z0-9_\-]{20,}", 0.9),  # GitLab
    Rule(r"\bxox[abposr]-[A-Za-z0-9\-]{10,}", 0.9),  # Slack
    Rule(r"\bhf_[A-Za-z0-9]{30,}\b", 0.9),  # Hugging Face
    Rule(r"\beyJ[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,}", 0.85),  # JWT
    Rule(r"(?i)\bbearer\s+([A-Za-z0-9._~+/=\-]{16,})", 0.8, 1),
    Rule(r"(?i)aws_secret_access_key\W{0,4}([A-Za-z0-9/+=]{40})", 0.9, 1),
    Rule(r"(?i)\b(?:api[_-]?key|secret|token|password|passwd)\b[\"']?\s*[:=]\s*[\"']?([^\s\"',;]{8,})", 0.7, 1),
]

EMPLOYEE_ID_RULES = [
    Rule(r"(?i)\bemp-?\d{5,7}\b", 0.85),
    Rule(r"(?i)\bbdg-?\d{4,6}\b", 0.85),
    Rule(r"(?i)\b(?:badge|employee)\s*(?:id|no\.?|number|#)?\s*[:#]?\s*(\d{4,8})\b", 0.6, 1),
]

SERIAL_RULES = [
    Rule(r"\bPLT\d{2}-[A-Z]{3}-\d{5}\b", 0.85),  # plant equipment serials (factory template convention)
    Rule(r"(?i)\b(?:s/n|serial(?:\s*(?:no\.?|number))?)\"?\s*[:=]?\s*\"?([A-Z0-9][A-Z0-9\-]{5,})", 0.6, 1),
]


# Presidio's SSN recognizer misses a bare number after "ssn" (its context boost needs a lemmatizer, which the
# offline blank pipeline lacks) and rejects well-known example numbers such as 123-45-6789, which people do
# type as their SSN. The dashed 3-2-4 shape is specific enough to redact on its own.
SSN_RULES = [
    Rule(r"(?i)\b(?:ssn|social\s+security(?:\s+(?:number|no\.?|#))?)\W{0,3}(\d{3}[- ]?\d{2}[- ]?\d{4})\b", 0.85, 1),
    Rule(r"(?<![\d-])\d{3}-\d{2}-\d{4}(?![\d-])", 0.6),
]


def custom_recognizers() -> list[EntityRecognizer]:
    """blacksoil's recognizers for secrets, SSNs in the forms Presidio misses, and plant identifiers."""
    return [
        RegexRecognizer("US_SSN", SSN_RULES, "UsSsnContextRecognizer"),
        RegexRecognizer("API_KEY", API_KEY_RULES, "ApiKeyRecognizer"),
        RegexRecognizer("EMPLOYEE_ID", EMPLOYEE_ID_RULES, "EmployeeIdRecognizer"),
        RegexRecognizer("SERIAL_NUMBER", SERIAL_RULES, "PlantSerialRecognizer"),
    ]


def presidio_recognizers() -> list[EntityRecognizer]:
    """Presidio's model-free recognizers (regex plus checksum: Luhn, IBAN mod-97, base58check)."""
    return [
        OfflineEmailRecognizer(),
        PhoneRecognizer(supported_regions=("US", "GB", "DE", "FR", "IN", "CA", "NL", "IT", "ES")),
        CreditCardRecognizer(),
        IbanRecognizer(),
        IpRecognizer(),
        UsSsnRecognizer(),
        CryptoRecognizer(),
    ]


# Words right before a number that make it an inventory/order identifier, not a phone number.
NOT_A_PHONE_BEFORE = re.compile(
    r"(?i)(?:\bP/?N|\bpart(?:\s*no\.?)?|\bSKU|\border|\blot|\bWO|\binvoice|\bticket|\bbatch|\bitem|\bdrawing)"
    r"[\s#:.\"]*$"
)


def is_part_number(text: str, start: int) -> bool:
    """True when the number starting at `start` is introduced as a part/order/lot number."""
    return NOT_A_PHONE_BEFORE.search(text[max(0, start - 16) : start]) is not None


_DECIMAL = re.compile(r"\d+\.\d+")


def is_measurement(text: str, start: int, end: int) -> bool:
    """True when a phone-shaped match is a decimal number (78.12345678) or its fraction digits (the `12345678`
    of `78.12345678`): a sensor reading or a computed value, never a phone number (a dotted phone number has
    two dots)."""
    return _DECIMAL.fullmatch(text[start:end]) is not None or bool(re.search(r"\d\.$", text[max(0, start - 2):start]))
