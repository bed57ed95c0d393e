"""Identifiers: UUIDv7 everywhere (time-sortable, so inserts stay index-friendly)."""

import uuid

import uuid_utils


def uuid7() -> uuid.UUID:
    return uuid.UUID(bytes=uuid_utils.uuid7().bytes)


def deterministic_id(namespace: uuid.UUID, name: str) -> uuid.UUID:
    """A stable id derived from a name (UUIDv5), for ids that must repeat across retries."""
    return uuid.uuid5(namespace, name)
