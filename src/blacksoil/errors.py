"""The exception tree shared by every pillar.

User errors name the bad value and the fix; retryable errors may succeed later; internal errors are bugs.
"""

from __future__ import annotations

import re


class BlacksoilError(Exception):
    """Base of every error blacksoil raises on purpose."""

    #: HTTP status the gateway answers with when this error reaches it.
    status_code: int = 500
    #: OpenAI-style error type string.
    error_type: str = "internal_error"

    def __init__(self, message: str, *, param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code


class UserError(BlacksoilError):
    """Bad input or configuration: the message names the value and how to fix it."""

    status_code = 400
    error_type = "invalid_request_error"


class ConfigError(UserError):
    """A setting, file or command-line value is invalid."""


class NotFoundError(UserError):
    """A named thing (model, run, adapter, task) does not exist."""

    status_code = 404
    error_type = "not_found_error"


class AuthError(UserError):
    """Missing or wrong credentials, or a tenant reaching for another tenant's data."""

    status_code = 401
    error_type = "authentication_error"


class PolicyDenied(UserError):
    """A policy forbade the action (tool call, console action)."""

    status_code = 403
    error_type = "permission_error"


class RetryableError(BlacksoilError):
    """A transient condition (queue full, engine restarting): the same call may succeed later."""

    status_code = 503
    error_type = "server_unavailable"

    def __init__(
        self, message: str, *, retry_after_s: float = 1.0, param: str | None = None, code: str | None = None
    ) -> None:
        super().__init__(message, param=param, code=code)
        self.retry_after_s = retry_after_s


class Overloaded(RetryableError):
    """The bounded queue is full: answer 429 with Retry-After."""

    status_code = 429
    error_type = "rate_limit_error"


class InternalError(BlacksoilError):
    """A bug or an invariant broken inside blacksoil."""


def error_body(message: str, error_type: str, code: str | None, param: str | None) -> dict[str, dict[str, str | None]]:
    """The one JSON shape of every HTTP error: {"error": {message, type, code, param}}.

    Every route, middleware and stream builds its error through this function (tests/serving/test_fuzz.py checks
    that no other module spells the shape out), so clients can rely on all four keys. `code` is never empty.
    """
    return {"error": {"message": message, "type": error_type, "code": code or "error", "param": param}}


_URL = re.compile(r"\bhttps?://[^\s'\"<>]+")


def public_message(message: str, home: str = "") -> str:
    """`message` as a client may read it: without internal addresses (engines) or the data directory `home`."""
    out = _URL.sub("<internal address>", message)
    return out.replace(home, "$BLACKSOIL_HOME") if len(home) > 1 else out


def http_error_body(e: BlacksoilError, home: str = "") -> dict[str, dict[str, str | None]]:
    """`error_body` for one of our exceptions, as a client may read it; its code defaults to the HTTP status."""
    return error_body(public_message(e.message, home), e.error_type, e.code or str(e.status_code), e.param)
