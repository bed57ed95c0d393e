"""gpuaas's problem types (RFC 9457), each with its HTTP status and stable slug."""

from platformkit.errors import FieldError, ProblemError


class NoCapacity(ProblemError):
    status, slug, title = 409, "no-capacity", "No capacity for this request"


class QuotaExceededProblem(ProblemError):
    status, slug, title = 409, "quota-exceeded", "Project quota exceeded"


class BalanceExhausted(ProblemError):
    status, slug, title = 402, "balance-exhausted", "The tenant's balance is exhausted"


class BalanceUnknown(ProblemError):
    """No balance standing projected for the tenant yet (billing.balance.v1): the money gate
    fails closed."""

    status, slug, title = 402, "balance-unknown", "The tenant's balance is not known yet"


class PriceUnknown(ProblemError):
    """No price in effect for the allocation's price key (billing.price.v1) in the tenant's
    currency: the money gate fails closed."""

    status, slug, title = 409, "price-unknown", "No known price for this request"


class IllegalState(ProblemError):
    status, slug, title = 409, "illegal-transition", "Not allowed in the current state"


class TenantSuspendedProblem(ProblemError):
    status, slug, title = 403, "tenant-suspended", "The tenant is suspended"


class LaunchRefusedProblem(ProblemError):
    """The launch gate refused the named bundle. One problem type per reason
    (`bundle-<reason>`: bundle-unknown-release, bundle-manifest-digest, bundle-yanked,
    bundle-unsigned, bundle-untrusted, bundle-revoked, bundle-expired, bundle-below-threshold,
    bundle-unpromoted); `errors[0]` names the field `bundle` and the reason code."""

    status, slug, title = 422, "bundle-refused", "The bundle may not be launched"

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}", errors=[FieldError("bundle", reason)])
        self.reason = reason
        self.slug = f"bundle-{reason}"
        self.title = f"The bundle may not be launched: {reason}"
