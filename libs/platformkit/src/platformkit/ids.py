"""Identifiers: UUIDv7 everywhere (time-sortable, so inserts stay index-friendly)."""

import uuid

import uuid_utils


def uuid7() -> uuid.UUID:
    return uuid.UUID(bytes=uuid_utils.uuid7().bytes)
