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
