"""gpuaas's problem types (RFC 9457), each with its HTTP status and stable slug."""

from platformkit.errors import ProblemError


class NoCapacity(ProblemError):
    status, slug, title = 409, "no-capacity", "No capacity for this request"


class QuotaExceededProblem(ProblemError):
    status, slug, title = 409, "quota-exceeded", "Project quota exceeded"


class BalanceExhausted(ProblemError):
    status, slug, title = 402, "balance-exhausted", "The tenant's balance is exhausted"


class IllegalState(ProblemError):
    status, slug, title = 409, "illegal-transition", "Not allowed in the current state"


class TenantSuspendedProblem(ProblemError):
    status, slug, title = 403, "tenant-suspended", "The tenant is suspended"
