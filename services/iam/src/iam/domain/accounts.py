"""Rules of email verification and invitations (pure).

A verification link and an invitation are each a single-use bearer secret sent to one
address: holding it proves that one reads the address. Their states are derived from the
row's timestamps, so there is no status column to drift:

    verification: pending -> used | expired
    invitation:   pending -> accepted | revoked | expired
"""

import datetime as dt
import enum

VERIFICATION_PREFIX = "gcv_"
INVITATION_PREFIX = "gci_"
VERIFICATION_TTL = dt.timedelta(hours=24)
INVITATION_TTL = dt.timedelta(days=7)


class InvitationState(enum.StrEnum):
    PENDING = "pending"
    ACCEPTED = "accepted"
    REVOKED = "revoked"
    EXPIRED = "expired"


def invitation_state(
    *,
    expires_at: dt.datetime,
    accepted_at: dt.datetime | None,
    revoked_at: dt.datetime | None,
    at: dt.datetime,
) -> InvitationState:
    if accepted_at is not None:
        return InvitationState.ACCEPTED
    if revoked_at is not None:
        return InvitationState.REVOKED
    if at >= expires_at:
        return InvitationState.EXPIRED
    return InvitationState.PENDING


def verification_usable(
    expires_at: dt.datetime, used_at: dt.datetime | None, at: dt.datetime
) -> bool:
    return used_at is None and at < expires_at


def verification_mail(link: str, purpose: str) -> tuple[str, str]:
    what = "your gpucloud tenant" if purpose == "signup" else "your gpucloud account"
    return (
        "Verify your email address for gpucloud",
        f"Someone (hopefully you) signed up for {what} with this address.\n\n"
        f"Open this link within 24 hours to verify it and finish:\n\n{link}\n\n"
        "The link works once. If it was not you, ignore this message: nothing is created.\n",
    )


def existing_account_mail(link: str) -> tuple[str, str]:
    return (
        "Your gpucloud account",
        "Someone (hopefully you) tried to sign up for gpucloud with this address, which "
        "already has an account. Nothing was changed.\n\n"
        f"Sign in here instead:\n\n{link}\n",
    )


def invitation_mail(link: str, role: str, tenant_name: str) -> tuple[str, str]:
    return (
        f"You are invited to {tenant_name} on gpucloud",
        f"You are invited to hold the role {role!r} in {tenant_name} on gpucloud.\n\n"
        f"Open this link within 7 days to accept (it works once):\n\n{link}\n\n"
        "If you did not expect this, ignore the message: nothing binds until you accept.\n",
    )
