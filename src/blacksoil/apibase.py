"""The base of every JSON body the HTTP API accepts: one place that decides what any route's body may hold.

Every route's body model derives from `RequestBody`; its nested parts derive from `ApiModel`. Before a route's
own fields are looked at, the whole body is walked once (iteratively, so hostile input cannot exhaust the
stack) and refused with a 400 naming the place when it holds:
- nesting deeper than MAX_DEPTH: deeper JSON made the schema checker and the anonymizer recurse until
  Python's limit (a 500, or an experience event silently dropped);
- a string that is not valid Unicode text (a lone surrogate such as "\\ud800" cannot be encoded as UTF-8, so
  the engine call failed with a 500);
- NaN or ±Infinity (Python's json accepts them; the engine does not) or an integer beyond 64 bits.
Unknown top-level fields are refused too (extra="forbid"): nothing a route does not name reaches an engine.
"""

from __future__ import annotations

import math
from typing import Any

from pydantic import BaseModel, ConfigDict, model_validator

from blacksoil.errors import UserError

MAX_DEPTH = 32
"""Deepest nesting of objects and arrays a request body may have (levels). Real tool schemas use under 10."""
_INT_LIMIT = 2**63


class ApiModel(BaseModel):
    """A part of a request body: typed fields, finite numbers only."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class RequestBody(ApiModel):
    """A whole request body: checked for depth, text encoding and number range before its fields."""

    @model_validator(mode="before")
    @classmethod
    def _safe_json(cls, data: Any) -> Any:
        check_json(data)
        return data


def check_json(data: Any, max_depth: int = MAX_DEPTH) -> None:
    """Raise UserError (param = dotted path) when `data` is too deep, holds bad text or non-finite numbers."""
    stack: list[tuple[Any, int, str]] = [(data, 0, "")]
    while stack:
        value, depth, path = stack.pop()
        if isinstance(value, dict | list):
            if depth >= max_depth:
                raise UserError(f"{path or 'body'}: JSON nested deeper than {max_depth} levels; flatten it",
                                param=path or None, code="too_deep")
            items = value.items() if isinstance(value, dict) else enumerate(value)
            for k, v in items:
                if isinstance(k, str):
                    _check_text(k, path or "body")
                stack.append((v, depth + 1, f"{path}.{k}" if path else str(k)))
        elif isinstance(value, str):
            _check_text(value, path)
        elif isinstance(value, float) and not math.isfinite(value):
            raise UserError(f"{path or 'body'}: {value} is not a finite number; send a finite number",
                            param=path or None, code="invalid_value")
        elif isinstance(value, int) and not isinstance(value, bool) and not -_INT_LIMIT <= value < _INT_LIMIT:
            raise UserError(f"{path or 'body'}: integer out of the 64-bit range; send a smaller number",
                            param=path or None, code="invalid_value")


def _check_text(s: str, path: str) -> None:
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:
        raise UserError(f"{path or 'body'}: the text holds an unpaired UTF-16 surrogate (e.g. \\ud800), which is "
                        "not valid Unicode; send valid text", param=path or None, code="invalid_text") from None
