"""Tenants: the unit of isolation and billing. Pure rules, no I/O.

State machine (docs/state-machines.md#tenant): active -> suspended -> active.
"""

import datetime as dt
import enum
import re
import uuid
from dataclasses import dataclass

from platformkit.ids import uuid7

SLUG = re.compile(r"^[a-z0-9][a-z0-9-]{1,62}$")


class TenantStatus(enum.StrEnum):
    ACTIVE = "active"
    SUSPENDED = "suspended"


class TenantEvent(enum.StrEnum):
    CREATED = "iam.tenant.created"
    SUSPENDED = "iam.tenant.suspended"
    MFA_POLICY_CHANGED = "iam.tenant.mfa-policy-changed"


@dataclass(frozen=True)
class Tenant:
    id: uuid.UUID
    name: str
    slug: str
    status: TenantStatus
    created_at: dt.datetime

    @classmethod
    def new(cls, name: str, slug: str) -> "Tenant":
        return cls(
            id=uuid7(),
            name=name.strip(),
            slug=slug,
            status=TenantStatus.ACTIVE,
            created_at=dt.datetime.now(dt.UTC),
        )
