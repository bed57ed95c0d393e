"""Idempotency-Key for mutating requests: same key and body, same stored response;
same key with another body, 422. The stored response commits in the same transaction as
the effect, so a retried request after a crash either finds it or redoes the whole work.
"""

import hashlib
from typing import Any

import msgspec
from sqlalchemy import text

from platformkit.db import UnitOfWork
from platformkit.errors import IdempotencyMismatch, ValidationFailed

_FIND = text(
    "SELECT request_hash, response_status, response_body FROM idempotency_keys"
    " WHERE scope = :scope AND key = :key"
)
_STORE = text(
    "INSERT INTO idempotency_keys (scope, key, request_hash, response_status, response_body)"
    " VALUES (:scope, :key, :hash, :status, :body)"
)


class StoredResponse(msgspec.Struct, frozen=True):
    status: int
    body: bytes


def request_hash(body: Any) -> str:
    raw = body if isinstance(body, bytes) else msgspec.json.encode(body)
    return hashlib.sha256(raw).hexdigest()


def check_key(key: str | None) -> str | None:
    if key is not None and not (1 <= len(key) <= 200):
        raise ValidationFailed.for_field("Idempotency-Key", "must be 1 to 200 characters")
    return key


async def find(uow: UnitOfWork, scope: str, key: str, body_hash: str) -> StoredResponse | None:
    row = (await uow.session.execute(_FIND, {"scope": scope, "key": key})).first()
    if row is None:
        return None
    if row.request_hash != body_hash:
        raise IdempotencyMismatch(f"Idempotency-Key {key!r} was used with a different body")
    return StoredResponse(row.response_status, bytes(row.response_body))


async def remember(
    uow: UnitOfWork, scope: str, key: str, body_hash: str, status: int, body: bytes
) -> None:
    await uow.session.execute(
        _STORE, {"scope": scope, "key": key, "hash": body_hash, "status": status, "body": body}
    )
