import datetime as dt
import uuid
from typing import Annotated, Literal

import msgspec


class TenantCreate(msgspec.Struct, forbid_unknown_fields=True):
    name: Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
    slug: Annotated[str, msgspec.Meta(pattern=r"^[a-z0-9][a-z0-9-]{1,62}$")]


class TenantOut(msgspec.Struct):
    id: uuid.UUID
    name: str
    slug: str
    status: Literal["active", "suspended"]
    created_at: dt.datetime


class TenantPage(msgspec.Struct):
    items: list[TenantOut]
    next_after: uuid.UUID | None = None


class SignUpIn(msgspec.Struct, forbid_unknown_fields=True):
    tenant_name: Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
    slug: Annotated[str, msgspec.Meta(pattern=r"^[a-z0-9][a-z0-9-]{1,62}$")]
    email: Annotated[str, msgspec.Meta(min_length=3, max_length=320)]
    password: Annotated[str, msgspec.Meta(min_length=12, max_length=256)]


class UserCreate(msgspec.Struct, forbid_unknown_fields=True):
    email: Annotated[str, msgspec.Meta(min_length=3, max_length=320)]
    password: Annotated[str, msgspec.Meta(min_length=12, max_length=256)]


class UserOut(msgspec.Struct):
    id: uuid.UUID
    email: str
    created_at: dt.datetime


class ProjectCreate(msgspec.Struct, forbid_unknown_fields=True):
    name: Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
    slug: Annotated[str, msgspec.Meta(pattern=r"^[a-z0-9][a-z0-9-]{1,62}$")]


class ProjectOut(msgspec.Struct):
    id: uuid.UUID
    tenant_id: uuid.UUID
    name: str
    slug: str
    created_at: dt.datetime


class SignUpOut(msgspec.Struct):
    tenant: TenantOut
    user: UserOut
    project: ProjectOut


class VerificationSent(msgspec.Struct):
    """The same answer whether or not the address has an account (no enumeration)."""

    status: Literal["verification_sent"]
    detail: str


class VerifyEmailIn(msgspec.Struct, forbid_unknown_fields=True):
    token: Annotated[str, msgspec.Meta(min_length=1, max_length=200)]


class VerifiedOut(msgspec.Struct, omit_defaults=True):
    """The account the link made; a sign-up's tenant and default project with it."""

    user: UserOut
    tenant: TenantOut | None = None
    project: ProjectOut | None = None


class InvitationOut(msgspec.Struct):
    id: uuid.UUID
    tenant_id: uuid.UUID
    project_id: uuid.UUID | None
    email: str
    role: str
    state: Literal["pending", "accepted", "revoked", "expired"]
    created_at: dt.datetime
    expires_at: dt.datetime


class AcceptInvitationIn(msgspec.Struct, forbid_unknown_fields=True):
    token: Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
    # The account's password; for an address without an account, the new account's.
    password: Annotated[str, msgspec.Meta(min_length=1, max_length=256)]


Role = Literal["owner", "admin", "member", "viewer", "billing"]
ProjectRole = Literal["admin", "member", "viewer"]


class MemberGrant(msgspec.Struct, forbid_unknown_fields=True):
    email: Annotated[str, msgspec.Meta(min_length=3, max_length=320)]
    role: Role


class MembershipOut(msgspec.Struct):
    id: uuid.UUID
    tenant_id: uuid.UUID
    project_id: uuid.UUID | None
    principal_id: uuid.UUID
    principal_kind: Literal["user", "service_account"]
    role: Role
    email: str | None
    created_at: dt.datetime


class TenantSuspend(msgspec.Struct, forbid_unknown_fields=True):
    reason: Annotated[str, msgspec.Meta(min_length=1, max_length=1000)]


class ServiceAccountCreate(msgspec.Struct, forbid_unknown_fields=True):
    name: Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
    role: ProjectRole = "member"


class ServiceAccountOut(msgspec.Struct):
    id: uuid.UUID
    tenant_id: uuid.UUID
    project_id: uuid.UUID
    name: str
    created_at: dt.datetime


class ApiKeyCreate(msgspec.Struct, forbid_unknown_fields=True):
    expires_in_days: Annotated[int, msgspec.Meta(ge=1, le=365)] = 90
    # Rotation: the key this one replaces stays valid for `overlap_hours`, then expires.
    replaces: uuid.UUID | None = None
    overlap_hours: Annotated[int, msgspec.Meta(ge=0, le=720)] = 24


class ApiKeyOut(msgspec.Struct):
    id: uuid.UUID
    service_account_id: uuid.UUID
    prefix: str
    created_at: dt.datetime
    expires_at: dt.datetime
    revoked_at: dt.datetime | None


class ApiKeyIssuedOut(msgspec.Struct):
    key: ApiKeyOut
    # Shown once; iam keeps only a digest of it.
    api_key: str


class TokenOut(msgspec.Struct, omit_defaults=True):
    access_token: str
    token_type: str
    expires_in: int
    refresh_token: str | None = None


class MeOut(msgspec.Struct):
    subject: str
    kind: str
    tenant_id: uuid.UUID | None
    roles: list[str]
    project_roles: dict[str, list[str]]
    amr: list[str]


class SigningKeyOut(msgspec.Struct):
    kid: str
    status: Literal["active", "retired"]
    created_at: dt.datetime
    retired_at: dt.datetime | None
    publish_until: dt.datetime | None


class TotpEnrollmentOut(msgspec.Struct):
    # Shown once: add it to an authenticator app (or scan the otpauth URI as a QR code).
    secret: str
    otpauth_uri: str


class TotpVerifyIn(msgspec.Struct, forbid_unknown_fields=True):
    code: Annotated[str, msgspec.Meta(min_length=6, max_length=6, pattern=r"^[0-9]{6}$")]


class RecoveryCodesOut(msgspec.Struct):
    # Shown once; each works once, in place of a TOTP code, as the token endpoint's `otp`.
    recovery_codes: list[str]


class MfaStatusOut(msgspec.Struct):
    totp: Literal["none", "pending", "active"]
    recovery_codes_left: int


class MfaPolicy(msgspec.Struct, forbid_unknown_fields=True):
    require_mfa_for_admins: bool
