"""Trusted publisher keys (add, rotate to a successor, renew its trust expiry, revoke) and
promotion policies of a tenant. Every key change publishes its registry.key.* event in the
same transaction."""

from __future__ import annotations

import base64
import datetime as dt
import uuid
from typing import Any

from gpucloud_contracts.events.registry import KeyChanged
from gpucloud_trust.keys import InvalidKey, PublicKey
from platformkit.db import Database, UnitOfWork
from platformkit.errors import NotFound
from platformkit.ids import uuid7
from registry.app.common import Actor, StateConflict, conflict, emit, idempotent, invalid
from registry.domain import keys as rules
from registry.domain.channels import ORDER, Channel, IllegalTransition
from registry.domain.policy import InvalidPolicy, Policy
from registry.store import repository as repo

KEY_ADDED, KEY_ROTATED, KEY_RENEWED, KEY_REVOKED = (
    "registry.key.added",
    "registry.key.rotated",
    "registry.key.renewed",
    "registry.key.revoked",
)


def parse_public_key(text: str, field: str = "public_key") -> PublicKey:
    """A PEM SubjectPublicKeyInfo, or the raw 32 bytes in base64."""
    try:
        if text.strip().startswith("-----BEGIN"):
            return PublicKey.from_pem(text)
        return PublicKey.from_base64(text.strip())
    except InvalidKey as exc:
        raise invalid(field, f"not an Ed25519 public key: {exc}") from None


def key_out(row: Any, successor_key_id: str | None = None) -> KeyChanged:
    return KeyChanged(
        tenant_id=row["tenant_id"],
        id=row["id"],
        key_id=row["key_id"],
        public_key=base64.b64encode(bytes(row["public_key"])).decode(),
        algorithm="ed25519",
        status=row["status"],
        name=row["name"],
        successor_key_id=successor_key_id,
        revoked_at=row["revoked_at"],
        revocation_reason=row["revocation_reason"],
        expires_at=row["expires_at"],
        created_at=row["created_at"],
        occurred_at=dt.datetime.now(dt.UTC),
    )


def _expiry(expires_at: dt.datetime | None, field: str = "expires_at") -> dt.datetime | None:
    try:
        rules.check_expiry(expires_at, dt.datetime.now(dt.UTC))
    except rules.InvalidExpiry as exc:
        raise invalid(field, str(exc)) from None
    return expires_at


async def _insert(
    uow: UnitOfWork,
    tenant_id: uuid.UUID,
    public: PublicKey,
    name: str,
    actor: Actor,
    expires_at: dt.datetime | None,
):
    existing = await repo.find_key_by_key_id(uow, tenant_id, public.keyid)
    if existing is not None:
        what = (
            "was revoked and is never trusted again"
            if existing["status"] == "revoked"
            else "is trusted already"
        )
        raise StateConflict("key-exists", f"key {public.keyid} {what}")
    row = await repo.insert_key(
        uow,
        {
            "id": uuid7(),
            "tenant_id": tenant_id,
            "key_id": public.keyid,
            "public_key": public.raw,
            "name": name,
            "created_by": actor.subject,
            "expires_at": expires_at,
        },
    )
    if row is None:
        raise StateConflict("key-exists", f"key {public.keyid} is trusted already")
    await emit(uow, KEY_ADDED, tenant_id, key_out(row), tenant_id)
    return row


async def add_key(
    db: Database,
    tenant_id: uuid.UUID,
    public_key: str,
    name: str,
    actor: Actor,
    key: str | None,
    expires_at: dt.datetime | None = None,
) -> tuple[int, bytes]:
    public = parse_public_key(public_key)
    _expiry(expires_at)

    async def work(uow: UnitOfWork) -> tuple[int, Any]:
        return 201, key_out(await _insert(uow, tenant_id, public, name, actor, expires_at))

    request: dict[str, Any] = {"k": public.keyid, "n": name}
    if expires_at is not None:  # only when set: keys stored before expiry keep their hash
        request["e"] = expires_at.isoformat()
    return await idempotent(db, f"registry.keys.{tenant_id}", key, request, work)


async def _require_key(uow: UnitOfWork, tenant_id: uuid.UUID, key_id: uuid.UUID) -> Any:
    row = await repo.find_key(uow, tenant_id, key_id)
    if row is None:
        raise NotFound(f"key {key_id} not found")
    return row


async def rotate_key(
    db: Database,
    tenant_id: uuid.UUID,
    key_id: uuid.UUID,
    successor_public_key: str,
    name: str,
    actor: Actor,
    key: str | None,
    expires_at: dt.datetime | None = None,
) -> tuple[int, bytes]:
    public = parse_public_key(successor_public_key, "successor_public_key")
    _expiry(expires_at)

    async def work(uow: UnitOfWork) -> tuple[int, Any]:
        old = await _require_key(uow, tenant_id, key_id)
        try:
            rules.rotate(old["status"])
        except IllegalTransition as exc:
            raise conflict(exc) from None
        successor = await _insert(uow, tenant_id, public, name, actor, expires_at)
        rotated = await repo.rotate_key(uow, old["id"], successor["id"])
        await emit(uow, KEY_ROTATED, tenant_id, key_out(rotated, successor["key_id"]), tenant_id)
        return 201, {
            "rotated": key_out(rotated, successor["key_id"]),
            "successor": key_out(successor),
        }

    request: dict[str, Any] = {"r": str(key_id), "k": public.keyid}
    if expires_at is not None:
        request["e"] = expires_at.isoformat()
    return await idempotent(db, f"registry.keys.{tenant_id}", key, request, work)


async def renew_key(
    db: Database, tenant_id: uuid.UUID, key_id: uuid.UUID, expires_at: dt.datetime | None
) -> KeyChanged:
    """A new trust expiry (None: the key no longer expires). Idempotent by nature: the same
    expiry again changes nothing but announces it again."""
    async with db.unit_of_work() as uow:
        old = await _require_key(uow, tenant_id, key_id)
        try:
            rules.renew(old["status"], expires_at, dt.datetime.now(dt.UTC))
        except IllegalTransition as exc:
            raise conflict(exc) from None
        except rules.InvalidExpiry as exc:
            raise invalid("expires_at", str(exc)) from None
        renewed = await repo.renew_key(uow, old["id"], expires_at)
        out = key_out(renewed, await _successor_key_id(uow, renewed))
        await emit(uow, KEY_RENEWED, tenant_id, out, tenant_id)
        await uow.commit()
    return out


async def revoke_key(
    db: Database, tenant_id: uuid.UUID, key_id: uuid.UUID, reason: str, actor: Actor
) -> KeyChanged:
    if not reason.strip():
        raise invalid("reason", "say why the key is revoked")
    async with db.unit_of_work() as uow:
        old = await _require_key(uow, tenant_id, key_id)
        try:
            rules.revoke(old["status"])
        except IllegalTransition as exc:
            raise conflict(exc) from None
        revoked = await repo.revoke_key(uow, old["id"], reason.strip())
        out = key_out(revoked, await _successor_key_id(uow, revoked))
        await emit(uow, KEY_REVOKED, tenant_id, out, tenant_id)
        await uow.commit()
    return out


async def _successor_key_id(uow: UnitOfWork, row: Any) -> str | None:
    if row["successor_id"] is None:
        return None
    successor = await uow.fetch_one(
        "SELECT key_id FROM trusted_keys WHERE id = :s", {"s": row["successor_id"]}
    )
    return successor["key_id"] if successor else None


async def list_keys(db: Database, tenant_id: uuid.UUID) -> list[KeyChanged]:
    async with db.unit_of_work() as uow:
        rows = await repo.keys(uow, tenant_id)
    by_id = {r["id"]: r["key_id"] for r in rows}
    return [key_out(r, by_id.get(r["successor_id"])) for r in rows]


# ----------------------------------------------------------------------------- policies


def policy_from_row(row: Any, channel: Channel) -> Policy:
    if row is None:
        return Policy(channel)
    return Policy(
        channel,
        row["threshold"],
        tuple(row["required_key_ids"]),
        tuple(row["required_evidence"]),
    )


def policy_out(policy: Policy, configured: bool) -> dict[str, Any]:
    return {
        "channel": policy.channel.value,
        "threshold": policy.threshold,
        "required_key_ids": list(policy.required_key_ids),
        "required_evidence": list(policy.required_evidence),
        "configured": configured,
    }


async def list_policies(db: Database, tenant_id: uuid.UUID) -> list[dict[str, Any]]:
    async with db.unit_of_work() as uow:
        rows = {r["channel"]: r for r in await repo.policies(uow, tenant_id)}
    return [policy_out(policy_from_row(rows.get(c.value), c), c.value in rows) for c in ORDER]


async def set_policy(
    db: Database,
    tenant_id: uuid.UUID,
    channel: Channel,
    threshold: int,
    required_key_ids: list[str],
    required_evidence: list[str],
    actor: Actor,
) -> dict[str, Any]:
    try:
        policy = Policy(
            channel,
            threshold,
            tuple(dict.fromkeys(required_key_ids)),
            tuple(dict.fromkeys(required_evidence)),
        )
    except InvalidPolicy as exc:
        raise invalid(exc.field, exc.message) from None
    async with db.unit_of_work() as uow:
        known = {k["key_id"]: k for k in await repo.keys(uow, tenant_id)}
        unknown = [k for k in policy.required_key_ids if k not in known]
        if unknown:
            raise invalid("required_key_ids", f"not trusted keys of the tenant: {unknown}")
        await repo.upsert_policy(
            uow,
            {
                "tenant_id": tenant_id,
                "channel": channel.value,
                "threshold": policy.threshold,
                "required_key_ids": list(policy.required_key_ids),
                "required_evidence": list(policy.required_evidence),
                "updated_by": actor.subject,
            },
        )
        await uow.commit()
    return policy_out(policy, True)
