"""Typed errors of the SDK. An API answer that is not a success becomes an `ApiError`
subclass carrying the RFC 9457 problem (type, title, detail, field errors, trace id); the
class tells what to do (sign in, fix the request, top up, retry), and `problem_class` maps
it to the CLI's exit code (gpucloud_cli.exit_codes)."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from gpucloud_cli.exit_codes import ExitCode, exit_code, problem_class

PROBLEM_JSON = "application/problem+json"


@dataclasses.dataclass(frozen=True)
class FieldError:
    field: str
    message: str


class GpucloudError(Exception):
    """Anything the CLI reports as an error: a title, a detail, a problem class."""

    problem_class = "error"
    title = "Error"
    hint: str | None = None  # what to do about it, when there is one thing to do

    def __init__(
        self, detail: str | None = None, *, title: str | None = None, hint: str | None = None
    ) -> None:
        super().__init__(detail or title or self.title)
        if title:
            self.title = title
        if hint:
            self.hint = hint
        self.detail = detail

    @property
    def exit_code(self) -> ExitCode:
        return exit_code(self.problem_class)

    def to_json(self) -> dict[str, Any]:
        return {
            "class": self.problem_class,
            "exit_code": int(self.exit_code),
            "title": self.title,
            "detail": self.detail,
            "hint": self.hint,
        }


class NotSignedIn(GpucloudError):
    problem_class = "auth"
    title = "Not signed in"


class SessionExpired(GpucloudError):
    """The stored session can no longer be refreshed (expired, revoked, reused)."""

    problem_class = "auth"
    title = "Session expired"


class UnknownName(GpucloudError):
    """A name or id the user typed matches nothing the API lists."""

    problem_class = "not_found"
    title = "Not found"


class NetworkError(GpucloudError):
    problem_class = "network"
    title = "The gateway did not answer"


class Unfinished(GpucloudError):
    """A wait ended in a state the command did not want, or ran out of time."""

    problem_class = "unfinished"
    title = "Did not finish"

    def __init__(self, detail: str, *, document: dict[str, Any] | None = None) -> None:
        super().__init__(detail)
        self.document = document or {}

    def to_json(self) -> dict[str, Any]:
        return {**super().to_json(), **self.document}


class Unverified(GpucloudError):
    """What a log served contradicts what the verifier holds (a signature, a pinned
    checkpoint, a record's proof, the tenant's sequence): the first inconsistency."""

    problem_class = "unverified"
    title = "Audit trail failed verification"

    def __init__(self, detail: str, *, document: dict[str, Any] | None = None) -> None:
        super().__init__(detail)
        self.document = document or {}

    def to_json(self) -> dict[str, Any]:
        return {**super().to_json(), **self.document}


class BundleUnverified(GpucloudError):
    """A bundle fails the checks a node makes before running it (signatures, manifest,
    blobs): `reason` is the first failure, as the launch gate and the node agent name it."""

    problem_class = "unverified"
    title = "Bundle failed verification"

    def __init__(self, detail: str, *, reason: str) -> None:
        super().__init__(detail)
        self.reason = reason

    def to_json(self) -> dict[str, Any]:
        return {**super().to_json(), "reason": self.reason}


class InvalidInput(GpucloudError):
    """Input the CLI refuses before sending anything, named like an API field error."""

    problem_class = "validation"
    title = "Invalid input"

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.errors = [FieldError(field, message)]

    def to_json(self) -> dict[str, Any]:
        return {**super().to_json(), "errors": [dataclasses.asdict(e) for e in self.errors]}


class ProtocolError(GpucloudError):
    """The gateway answered something this client does not understand."""

    problem_class = "server"
    title = "Unexpected answer"


class ApiError(GpucloudError):
    """An RFC 9457 problem answer (or a non-problem error answer, described as one)."""

    def __init__(
        self,
        status: int,
        title: str,
        detail: str | None = None,
        *,
        type: str | None = None,
        errors: list[FieldError] | None = None,
        trace_id: str | None = None,
        instance: str | None = None,
        headers: dict[str, str] | None = None,
        hint: str | None = None,
    ) -> None:
        super().__init__(detail, title=title, hint=hint)
        self.status = status
        self.type = type
        self.errors = errors or []
        self.trace_id = trace_id
        self.instance = instance
        self.headers = headers or {}

    @property
    def problem_class(self) -> str:  # type: ignore[override]
        return problem_class(self.status, self.type)

    @property
    def slug(self) -> str:
        return (self.type or "").rstrip("/").rpartition("/")[2]

    def __str__(self) -> str:
        return f"{self.title}: {self.detail}" if self.detail else self.title

    def to_json(self) -> dict[str, Any]:
        return {
            **super().to_json(),
            "status": self.status,
            "type": self.type,
            "errors": [dataclasses.asdict(e) for e in self.errors],
            "trace_id": self.trace_id,
        }


class AuthError(ApiError):
    """401 / 403, or iam's invalid_grant / invalid_client."""


class MfaRequired(AuthError):
    """The password was right; the account has a second factor: send its code as `otp`."""


class StepUpRequired(AuthError):
    """RFC 9470: the route wants a recent second factor; sign in again with one."""

    hint = "sign in again with your second factor: `gpucloud login` (it asks for the code)"


class NotFound(ApiError):
    pass


class ValidationFailed(ApiError):
    pass


class Conflict(ApiError):
    pass


class PaymentRequired(ApiError):
    pass


class Throttled(ApiError):
    pass


class ServerError(ApiError):
    pass


_BY_CLASS: dict[str, type[ApiError]] = {
    "auth": AuthError,
    "not_found": NotFound,
    "validation": ValidationFailed,
    "conflict": Conflict,
    "payment_required": PaymentRequired,
    "throttled": Throttled,
    "server": ServerError,
}


def from_answer(status: int, headers: dict[str, str], body: bytes, reason: str = "") -> ApiError:
    """The typed error of an error answer: its problem+json when it has one, else the
    status and (a short piece of) the body."""
    problem: dict[str, Any] = {}
    try:
        parsed = json.loads(body) if body else {}
        if isinstance(parsed, dict):
            problem = parsed
    except ValueError:
        pass
    title = problem.get("title") if isinstance(problem.get("title"), str) else None
    detail = problem.get("detail") if isinstance(problem.get("detail"), str) else None
    if title is None:
        title = reason or f"HTTP {status}"
        text = body.decode("utf-8", "replace").strip()
        detail = detail or (text[:300] or None)
    errors = [
        FieldError(str(e.get("field", "")), str(e.get("message", "")))
        for e in problem.get("errors") or []
        if isinstance(e, dict)
    ]
    kind = problem.get("type") if isinstance(problem.get("type"), str) else None
    cls: type[ApiError] = _BY_CLASS.get(problem_class(status, kind), ApiError)
    challenge = headers.get("www-authenticate", "")
    if status == 401 and "insufficient_user_authentication" in challenge:
        cls = StepUpRequired
    elif (kind or "").endswith("/mfa-required"):
        cls = MfaRequired
    hint = "run `gpucloud login`" if status == 401 and cls is AuthError else None
    return cls(
        status,
        title,
        detail,
        type=kind,
        errors=errors,
        trace_id=problem.get("trace_id") or headers.get("x-trace-id"),
        instance=problem.get("instance"),
        headers=headers,
        hint=hint,
    )
