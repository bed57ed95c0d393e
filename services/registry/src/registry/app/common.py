"""What every use case shares: the caller (actor), the registry's problem types, the
Idempotency-Key adapter over the kit's `run_once` runner and the one place events enter the
outbox (registry's `EventPublisher`, topics from the contract catalog)."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import msgspec

from platformkit.db import Database, UnitOfWork
from platformkit.errors import Conflict, FieldError, ProblemError, ValidationFailed
from platformkit.idempotency import IdempotentRequest, StoredResponse, run_once
from registry.app.events import EVENTS
from registry.domain.channels import IllegalTransition


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
    await EVENTS.add_event(
        uow, event_type, subject=str(subject), payload=payload, tenant=str(tenant)
    )


def _stored(result: tuple[int, Any]) -> StoredResponse:
    status, body = result
    return StoredResponse(status, msgspec.json.encode(body))


async def idempotent(
    db: Database,
    scope: str,
    key: str | None,
    request: Any,
    work: Callable[[UnitOfWork], Awaitable[tuple[int, Any]]],
) -> tuple[int, bytes]:
    """Run `work` in one transaction through the kit's `run_once`: with an Idempotency-Key,
    the same key and body replay the stored (status, body), another body is a 422, and two
    concurrent requests with one key execute once."""
    response = await run_once(db, IdempotentRequest.of(scope, key, request), work, _stored)
    return response.status, response.body
