"""gpuaas's problem types (RFC 9457), each with its HTTP status and stable slug."""

from platformkit.errors import FieldError, ProblemError


class NoCapacity(ProblemError):
    status, slug, title = 409, "no-capacity", "No capacity for this request"


class QuotaExceededProblem(ProblemError):
    status, slug, title = 409, "quota-exceeded", "Project quota exceeded"


class BalanceExhausted(ProblemError):
    status, slug, title = 402, "balance-exhausted", "The tenant's balance is exhausted"


class IllegalState(ProblemError):
    status, slug, title = 409, "illegal-transition", "Not allowed in the current state"


class LaunchRefusedProblem(ProblemError):
    """The launch gate refused the named bundle; `errors[0].message` is the reason code
    (gpucloud_trust.gate: unknown-release, manifest-digest, yanked, unsigned, untrusted,
    revoked, expired, below-threshold, unpromoted; or bundle-required)."""

    status, slug, title = 422, "launch-refused", "The bundle may not be launched"

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}", errors=[FieldError("bundle", reason)])
        self.reason = reason
