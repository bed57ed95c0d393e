"""Idempotency-Key for mutating requests, owned by one runner: `run_once`.

    request = IdempotentRequest.of("gpuaas.allocations:<project>", key, fingerprint_of)
    reply = await run_once(db, request, work, encode)

- `scope` keeps keys of different resources (and tenants) apart; `key` is the client's
  Idempotency-Key (None: no idempotency, the work simply runs); `fingerprint` is the
  SHA-256 of what identifies the request (its body, or the fields that matter).
- `work(uow)` is the use case's transaction: it returns a domain result and never commits.
  `encode(result)` (given by the API layer) turns it into the `StoredResponse` the client
  gets: the status and body to replay. The runner stores it and commits it in the SAME
  transaction as the effect, so a retried request after a crash either finds it or redoes
  the whole work.
- Same key and fingerprint: the stored response, replayed (`replayed=True`), the work does
  not run. Same key, another fingerprint: 422 (`IdempotencyMismatch`).
- One execution under concurrency: the transaction first takes an advisory lock on
  (scope, key), so a second identical request waits for the first to commit and then
  replays its response (or, if the first rolled back, runs itself).

`lookup(db, request)` only looks (for a use case with expensive work to do before its
transaction, e.g. hashing a password: a replay skips it). A stored response with a status
of 400 or more replays as application/problem+json, anything else as application/json.
"""

import dataclasses
import hashlib
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import msgspec
from sqlalchemy import text

from platformkit.db import Database, UnitOfWork
from platformkit.errors import PROBLEM_JSON, IdempotencyMismatch, ValidationFailed

T = TypeVar("T")

_LOCK = text("SELECT pg_advisory_xact_lock(:lock)")
_FIND = text(
    "SELECT request_hash, response_status, response_body FROM idempotency_keys"
    " WHERE scope = :scope AND key = :key"
)
_STORE = text(
    "INSERT INTO idempotency_keys (scope, key, request_hash, response_status, response_body)"
    " VALUES (:scope, :key, :hash, :status, :body)"
)


class StoredResponse(msgspec.Struct, frozen=True):
    """What a request answered: replayed byte for byte for a repeated Idempotency-Key."""

    status: int
    body: bytes
    replayed: bool = False

    @property
    def media_type(self) -> str:
        return PROBLEM_JSON if self.status >= 400 else "application/json"


def request_hash(body: Any) -> str:
    raw = body if isinstance(body, bytes) else msgspec.json.encode(body)
    return hashlib.sha256(raw).hexdigest()


def check_key(key: str | None) -> str | None:
    if key is not None and not (1 <= len(key) <= 200):
        raise ValidationFailed.for_field("Idempotency-Key", "must be 1 to 200 characters")
    return key


@dataclasses.dataclass(frozen=True)
class IdempotentRequest:
    scope: str
    key: str
    fingerprint: str

    @classmethod
    def of(cls, scope: str, key: str | None, request: Any) -> "IdempotentRequest | None":
        """None without a key; `request` is fingerprinted (bytes as they are, anything else
        as its msgspec JSON)."""
        if check_key(key) is None:
            return None
        return cls(scope, key, request_hash(request))  # type: ignore[arg-type]

    @property
    def lock_id(self) -> int:
        digest = hashlib.sha256(f"{self.scope}\x00{self.key}".encode()).digest()
        return int.from_bytes(digest[:8], "big", signed=True)


async def _find(uow: UnitOfWork, request: IdempotentRequest) -> StoredResponse | None:
    params = {"scope": request.scope, "key": request.key}
    row = (await uow.session.execute(_FIND, params)).first()
    if row is None:
        return None
    if row.request_hash != request.fingerprint:
        raise IdempotencyMismatch(f"Idempotency-Key {request.key!r} was used with a different body")
    return StoredResponse(row.response_status, bytes(row.response_body), replayed=True)


async def lookup(db: Database, request: IdempotentRequest | None) -> StoredResponse | None:
    """The stored response of `request`, if it already ran (422 on another fingerprint)."""
    if request is None:
        return None
    async with db.unit_of_work() as uow:
        return await _find(uow, request)


async def run_once(
    db: Database,
    request: IdempotentRequest | None,
    work: Callable[[UnitOfWork], Awaitable[T]],
    encode: Callable[[T], StoredResponse],
) -> StoredResponse:
    """Run `work` once per Idempotency-Key and return its encoded (or replayed) response."""
    async with db.unit_of_work() as uow:
        if request is not None:
            await uow.session.execute(_LOCK, {"lock": request.lock_id})
            stored = await _find(uow, request)
            if stored is not None:
                return stored
        response = encode(await work(uow))
        if request is not None:
            await uow.session.execute(
                _STORE,
                {
                    "scope": request.scope,
                    "key": request.key,
                    "hash": request.fingerprint,
                    "status": response.status,
                    "body": response.body,
                },
            )
        await uow.commit()
    return response
