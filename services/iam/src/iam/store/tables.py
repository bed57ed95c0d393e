"""iam's tables as sqlmodel classes (the SQL migrations in store/migrations create them)."""

import datetime as dt
import uuid

from sqlmodel import Field, SQLModel


class TenantRow(SQLModel, table=True):
    __tablename__ = "tenants"

    id: uuid.UUID = Field(primary_key=True)
    name: str
    slug: str = Field(unique=True)
    status: str
    created_at: dt.datetime
