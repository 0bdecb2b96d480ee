"""The exception tree shared by every pillar.

User errors name the bad value and the fix; retryable errors may succeed later; internal errors are bugs.
"""

from __future__ import annotations


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
