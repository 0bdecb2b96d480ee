"""Presidio imported without its optional Hugging Face / torch backends (unused here, ~10 s of import).

Every experience module imports Presidio through this one so the gateway starts fast.
"""

from __future__ import annotations

import sys

# Presidio and thinc wrap `import transformers` / `import torch` in try/except ImportError; a None entry in
# sys.modules makes that import fail fast. The entries are removed again so later imports work normally.
_blocked = [m for m in ("transformers", "torch") if m not in sys.modules]
for _m in _blocked:
    sys.modules[_m] = None  # type: ignore[assignment]
try:
    import spacy
    from presidio_analyzer import AnalyzerEngine, EntityRecognizer, RecognizerRegistry, RecognizerResult
    from presidio_analyzer.nlp_engine import NlpArtifacts, SpacyNlpEngine
    from presidio_analyzer.predefined_recognizers import (
        CreditCardRecognizer,
        CryptoRecognizer,
        EmailRecognizer,
        IbanRecognizer,
        IpRecognizer,
        PhoneRecognizer,
        UsSsnRecognizer,
    )
    from presidio_anonymizer import AnonymizerEngine
    from presidio_anonymizer.entities import OperatorConfig
    from presidio_anonymizer.operators.aes_cipher import AESCipher
finally:
    for _m in _blocked:
        if sys.modules.get(_m) is None:
            del sys.modules[_m]



def blank_english() -> spacy.language.Language:
    """spaCy's tokenizer-only English pipeline (no model download)."""
    return spacy.blank("en")


__all__ = [
    "AESCipher",
    "AnalyzerEngine",
    "AnonymizerEngine",
    "CreditCardRecognizer",
    "CryptoRecognizer",
    "EmailRecognizer",
    "EntityRecognizer",
    "IbanRecognizer",
    "IpRecognizer",
    "NlpArtifacts",
    "OperatorConfig",
    "PhoneRecognizer",
    "RecognizerRegistry",
    "RecognizerResult",
    "SpacyNlpEngine",
    "UsSsnRecognizer",
    "blank_english",
]
