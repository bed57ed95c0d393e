"""What iam's tokens say: access-token claims (docs/iam.md#token-claims) and the rules of
rotating refresh tokens. Pure: signing and hashing happen in the app layer."""

import datetime as dt
import enum
import uuid
from dataclasses import dataclass
from typing import Any

ACCESS_TOKEN_TYPE = "at+jwt"
ACCESS_TOKEN_TTL = dt.timedelta(minutes=5)
REFRESH_TOKEN_TTL = dt.timedelta(days=14)
# Tokens are checked with a few seconds of leeway: keep a retired key published that long
# beyond the last token it could have signed.
PUBLISH_MARGIN = dt.timedelta(minutes=1)
REFRESH_TOKEN_PREFIX = "gcr_"
API_KEY_PREFIX = "gck_"


class RefreshStatus(enum.StrEnum):
    ACTIVE = "active"
    USED = "used"  # exchanged once; presenting it again is reuse
    REVOKED = "revoked"


@dataclass(frozen=True)
class Subject:
    """Everything an access token asserts about its caller."""

    id: uuid.UUID
    kind: str  # "user" | "service_account"
    tenant_id: uuid.UUID
    tenant_roles: frozenset[str]
    project_roles: dict[uuid.UUID, frozenset[str]]
    amr: tuple[str, ...]
    auth_time: dt.datetime
    # The API key a service account's token was minted from: services refuse the token as
    # soon as they learn the key was revoked (platformkit.revocations).
    api_key_id: uuid.UUID | None = None
    # A user the tenant's MFA policy covers who has no second factor yet: the token names
    # no tenant and no roles, so it reaches only routes about the caller itself (/me, MFA
    # enrollment) and is refused everywhere else.
    restricted: bool = False


RESTRICTED_MFA_ENROLLMENT = "mfa_enrollment"


def access_claims(
    subject: Subject,
    *,
    issuer: str,
    audience: str | list[str],
    jti: str,
    issued_at: dt.datetime,
) -> dict[str, Any]:
    claims: dict[str, Any] = {
        "iss": issuer,
        "aud": audience,
        "sub": str(subject.id),
        "kind": subject.kind,
        "tenant": str(subject.tenant_id),
        "roles": sorted(subject.tenant_roles),
        "proj": {str(p): sorted(r) for p, r in sorted(subject.project_roles.items())},
        "amr": list(subject.amr),
        "auth_time": int(subject.auth_time.timestamp()),
        "iat": int(issued_at.timestamp()),
        "nbf": int(issued_at.timestamp()),
        "exp": int((issued_at + ACCESS_TOKEN_TTL).timestamp()),
        "jti": jti,
    }
    if subject.api_key_id is not None:
        claims["api_key"] = str(subject.api_key_id)
    if subject.restricted:
        del claims["tenant"]
        claims.update(roles=[], proj={}, restricted=RESTRICTED_MFA_ENROLLMENT)
    return claims


class RefreshOutcome(enum.StrEnum):
    ROTATE = "rotate"
    REUSED = "reused"  # revoke the whole family
    REFUSED = "refused"


def judge_refresh(status: str, expires_at: dt.datetime, at: dt.datetime) -> RefreshOutcome:
    """A refresh token may be exchanged once. A second presentation means it leaked (or the
    client raced itself): either way the family can no longer be trusted."""
    if status == RefreshStatus.USED:
        return RefreshOutcome.REUSED
    if status != RefreshStatus.ACTIVE or at >= expires_at:
        return RefreshOutcome.REFUSED
    return RefreshOutcome.ROTATE
