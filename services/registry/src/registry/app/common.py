"""What every use case shares: the caller (actor), the registry's problem types, the one
Idempotency-Key helper and the one place events enter the outbox (so adapting to the kit's
coming idempotency runner and catalog-derived topics touches this module only)."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import msgspec

from gpucloud_contracts.catalog import EVENT_TYPES
from platformkit import idempotency
from platformkit.db import Database, UnitOfWork
from platformkit.errors import Conflict, FieldError, ProblemError, ValidationFailed
from platformkit.outbox import add_event
from registry.domain.channels import IllegalTransition

SOURCE = "registry"


@dataclass(frozen=True)
class Actor:
    subject: str
    kind: str


class Refused(ProblemError):
    """A rule of the request is broken (422); `errors` carry stable reason codes."""

    status, slug, title = 422, "registry-refused", "Refused by registry's rules"

    def __init__(self, reasons: list[str], detail: str, field: str = "body") -> None:
        super().__init__(detail, errors=[FieldError(field, r) for r in reasons])
        self.reasons = reasons


class PromotionRefused(Refused):
    slug, title = "promotion-refused", "The promotion policy is not satisfied"

    def __init__(self, reasons: list[str], detail: str) -> None:
        super().__init__(reasons, detail, field="policy")


class StateConflict(Conflict):
    slug = "registry-state"

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail, errors=[FieldError("state", reason)])
        self.reason = reason


def conflict(exc: IllegalTransition) -> StateConflict:
    return StateConflict(exc.reason, exc.detail)


def invalid(field: str, message: str) -> ValidationFailed:
    return ValidationFailed.for_field(field, message)


async def emit(
    uow: UnitOfWork, event_type: str, subject: uuid.UUID, payload: Any, tenant: uuid.UUID
) -> None:
    """Put one registry event in the outbox, on the topic the contract catalog names."""
    await add_event(
        uow,
        topic=EVENT_TYPES[event_type].topic,
        type=event_type,
        source=SOURCE,
        subject=str(subject),
        payload=msgspec.json.encode(payload),
        tenant=str(tenant),
    )


async def idempotent(
    db: Database,
    scope: str,
    key: str | None,
    request: Any,
    work: Callable[[UnitOfWork], Awaitable[tuple[int, Any]]],
) -> tuple[int, bytes]:
    """Run `work` in one transaction; with an Idempotency-Key, the same key and body replay
    the stored (status, body) and another body is a 422."""
    body_hash = idempotency.request_hash(msgspec.json.encode(request))
    async with db.unit_of_work() as uow:
        if key:
            stored = await idempotency.find(uow, scope, key, body_hash)
            if stored is not None:
                return stored.status, stored.body
        status, result = await work(uow)
        body = msgspec.json.encode(result)
        if key:
            await idempotency.remember(uow, scope, key, body_hash, status, body)
        await uow.commit()
    return status, body
