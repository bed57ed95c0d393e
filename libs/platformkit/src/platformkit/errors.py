"""RFC 9457 problem details: typed errors that carry their HTTP status and a stable type.

Handlers raise these; the HTTP layer renders them as application/problem+json. Validation
errors name the offending field in `errors[].field` so a client can point at it.
"""

from typing import Any

import msgspec

PROBLEM_BASE = "https://gpucloud.dev/problems/"
PROBLEM_JSON = "application/problem+json"


class FieldError(msgspec.Struct, frozen=True):
    field: str
    message: str


class Problem(msgspec.Struct, omit_defaults=True, kw_only=True):
    type: str
    title: str
    status: int
    detail: str | None = None
    instance: str | None = None
    errors: list[FieldError] | None = None
    trace_id: str | None = None


class ProblemError(Exception):
    status: int = 500
    slug: str = "internal"
    title: str = "Internal error"

    def __init__(
        self,
        detail: str | None = None,
        *,
        errors: list[FieldError] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(detail or self.title)
        self.detail = detail
        self.errors = errors
        self.headers = headers or {}

    def to_problem(self, instance: str | None = None, trace_id: str | None = None) -> Problem:
        return Problem(
            type=PROBLEM_BASE + self.slug,
            title=self.title,
            status=self.status,
            detail=self.detail,
            instance=instance,
            errors=self.errors,
            trace_id=trace_id,
        )


class BadRequest(ProblemError):
    status, slug, title = 400, "bad-request", "Bad request"


class ValidationFailed(ProblemError):
    status, slug, title = 422, "validation", "Request validation failed"

    @classmethod
    def for_field(cls, field: str, message: str) -> "ValidationFailed":
        return cls(f"{field}: {message}", errors=[FieldError(field, message)])


class Unauthorized(ProblemError):
    status, slug, title = 401, "unauthorized", "Authentication required"

    def __init__(self, detail: str | None = None, **kwargs: Any) -> None:
        kwargs.setdefault("headers", {"WWW-Authenticate": 'Bearer realm="gpucloud"'})
        super().__init__(detail, **kwargs)


class Forbidden(ProblemError):
    status, slug, title = 403, "forbidden", "Not allowed"


class NotFound(ProblemError):
    status, slug, title = 404, "not-found", "Not found"


class Conflict(ProblemError):
    status, slug, title = 409, "conflict", "Conflict"


class IdempotencyMismatch(ProblemError):
    status, slug, title = 422, "idempotency-key-reused", "Idempotency-Key reused with another body"


class ServiceUnavailable(ProblemError):
    status, slug, title = 503, "unavailable", "Service unavailable"
