"""Users, projects, memberships and service accounts: pure rules, no I/O."""

import datetime as dt
import enum
import re
import uuid
from dataclasses import dataclass

from iam.domain.permissions import PROJECT_ROLES, ROLES
from platformkit.ids import uuid7

EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s]+\.[^@\s]+$")
MIN_PASSWORD, MAX_PASSWORD = 12, 256
DEFAULT_PROJECT_SLUG = "default"


class IdentityEvent(enum.StrEnum):
    USER_REGISTERED = "iam.user.registered"
    USER_MFA_ENABLED = "iam.user.mfa-enabled"
    PROJECT_CREATED = "iam.project.created"
    MEMBERSHIP_GRANTED = "iam.membership.granted"
    MEMBERSHIP_REVOKED = "iam.membership.revoked"
    SERVICE_ACCOUNT_CREATED = "iam.service-account.created"
    API_KEY_ISSUED = "iam.api-key.issued"
    API_KEY_REVOKED = "iam.api-key.revoked"


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def normalize_email(email: str) -> str | None:
    """The canonical (lower-case, trimmed) email, or None when it is not one."""
    email = email.strip().lower()
    return email if len(email) <= 320 and EMAIL.match(email) else None


def password_problem(password: str) -> str | None:
    if not MIN_PASSWORD <= len(password) <= MAX_PASSWORD:
        return f"must be {MIN_PASSWORD} to {MAX_PASSWORD} characters"
    return None


def role_problem(role: str, *, project: bool) -> str | None:
    allowed = PROJECT_ROLES if project else ROLES
    return None if role in allowed else f"must be one of {', '.join(allowed)}"


@dataclass(frozen=True)
class User:
    id: uuid.UUID
    email: str
    created_at: dt.datetime

    @classmethod
    def new(cls, email: str) -> "User":
        return cls(uuid7(), email, now())


@dataclass(frozen=True)
class Project:
    id: uuid.UUID
    tenant_id: uuid.UUID
    name: str
    slug: str
    created_at: dt.datetime

    @classmethod
    def new(cls, tenant_id: uuid.UUID, name: str, slug: str) -> "Project":
        return cls(uuid7(), tenant_id, name.strip(), slug, now())


@dataclass(frozen=True)
class Membership:
    id: uuid.UUID
    tenant_id: uuid.UUID
    project_id: uuid.UUID | None
    principal_id: uuid.UUID
    principal_kind: str
    role: str
    created_at: dt.datetime

    @classmethod
    def new(
        cls,
        tenant_id: uuid.UUID,
        principal_id: uuid.UUID,
        role: str,
        *,
        project_id: uuid.UUID | None = None,
        principal_kind: str = "user",
    ) -> "Membership":
        return cls(uuid7(), tenant_id, project_id, principal_id, principal_kind, role, now())


@dataclass(frozen=True)
class ServiceAccount:
    id: uuid.UUID
    tenant_id: uuid.UUID
    project_id: uuid.UUID
    name: str
    created_at: dt.datetime

    @classmethod
    def new(cls, tenant_id: uuid.UUID, project_id: uuid.UUID, name: str) -> "ServiceAccount":
        return cls(uuid7(), tenant_id, project_id, name.strip(), now())


@dataclass(frozen=True)
class ApiKey:
    id: uuid.UUID
    service_account_id: uuid.UUID
    prefix: str
    created_at: dt.datetime
    expires_at: dt.datetime
    revoked_at: dt.datetime | None = None

    def usable(self, at: dt.datetime) -> bool:
        return self.revoked_at is None and at < self.expires_at
