"""Exit codes: one per problem class, so a script can tell "sign in again" from "fix the
request" from "try later" without parsing messages. Documented in docs/cli.md; never
renumbered (a new class gets a new number)."""

import enum


class ExitCode(enum.IntEnum):
    OK = 0
    ERROR = 1  # unexpected, or the user declined a confirmation
    USAGE = 2  # click's usage errors: unknown option, missing argument
    AUTH = 3  # 401, 403, invalid_grant, not signed in, session expired, step-up needed
    NOT_FOUND = 4  # 404: also another tenant's resource (it reads as not found)
    VALIDATION = 5  # 400, 422: the problem names the field
    CONFLICT = 6  # 409: illegal transition, no capacity, quota exceeded, slug taken
    PAYMENT_REQUIRED = 7  # 402: balance exhausted or too short a runway: top up first
    SERVER = 8  # 5xx
    NETWORK = 9  # the gateway did not answer (refused, timed out, reset)
    UNFINISHED = 10  # a wait ended in an unwanted state (rejected, failed) or timed out
    THROTTLED = 11  # 429: too many attempts; retry after the time the message gives
    UNVERIFIED = 12  # `audit verify`: the log contradicts a signature, a pin or a proof


# problem class (the `class` of a JSON error document) -> exit code
CLASS_CODES: dict[str, ExitCode] = {
    "error": ExitCode.ERROR,
    "usage": ExitCode.USAGE,
    "auth": ExitCode.AUTH,
    "not_found": ExitCode.NOT_FOUND,
    "validation": ExitCode.VALIDATION,
    "conflict": ExitCode.CONFLICT,
    "payment_required": ExitCode.PAYMENT_REQUIRED,
    "server": ExitCode.SERVER,
    "network": ExitCode.NETWORK,
    "unfinished": ExitCode.UNFINISHED,
    "throttled": ExitCode.THROTTLED,
    "unverified": ExitCode.UNVERIFIED,
}

# problem types whose HTTP status alone would put them in the wrong class: iam's token
# endpoint answers a wrong password or a spent refresh token with 400 (RFC 6749 §5.2).
TYPE_CLASSES: dict[str, str] = {
    "invalid-grant": "auth",
    "mfa-required": "auth",
    "invalid-client": "auth",
}


def problem_class(status: int, problem_type: str | None = None) -> str:
    """The class of an HTTP problem answer, from its RFC 9457 type slug or its status."""
    if problem_type:
        slug = problem_type.rstrip("/").rpartition("/")[2]
        if slug in TYPE_CLASSES:
            return TYPE_CLASSES[slug]
    if status in (401, 403):
        return "auth"
    if status == 404:
        return "not_found"
    if status in (400, 422):
        return "validation"
    if status == 409:
        return "conflict"
    if status == 402:
        return "payment_required"
    if status == 429:
        return "throttled"
    if status >= 500:
        return "server"
    return "error"


def exit_code(problem_class_name: str) -> ExitCode:
    return CLASS_CODES.get(problem_class_name, ExitCode.ERROR)
