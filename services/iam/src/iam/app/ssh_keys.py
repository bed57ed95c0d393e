"""Users' SSH public keys: add (a step-up operation: it is a new credential), list, revoke
(not step-up: cutting access off must stay fast). Each change is an event on
`iam.ssh-key.v1`, which terminal-gateway projects to authenticate `ssh` logins."""

import dataclasses
import datetime as dt
import uuid
from typing import Any

from gpucloud_contracts.events.iam import SshKeyAdded, SshKeyRevoked
from iam.app.events import EVENTS
from iam.domain import ssh_keys
from iam.domain.identity import now
from iam.domain.mfa import STEP_UP_MAX_AGE_S
from iam.store.identity import UserRepository
from iam.store.ssh_keys import SshKeyRepository
from platformkit.auth import Principal
from platformkit.db import Database
from platformkit.errors import Conflict, Forbidden, NotFound, ValidationFailed
from platformkit.ids import uuid7

ADDED, REVOKED = "iam.ssh-key.added", "iam.ssh-key.revoked"


@dataclasses.dataclass(frozen=True)
class SshKey:
    id: uuid.UUID
    name: str
    algorithm: str
    bits: int
    fingerprint: str
    public_key: str
    created_at: dt.datetime
    revoked_at: dt.datetime | None

    @classmethod
    def of(cls, row: Any) -> "SshKey":
        return cls(
            row["id"], row["name"], row["algorithm"], row["bits"], row["fingerprint"],
            row["public_key"], row["created_at"], row["revoked_at"],
        )  # fmt: skip


def _user(principal: Principal) -> uuid.UUID:
    if principal.kind != "user":
        raise Forbidden("only users have SSH keys")
    return uuid.UUID(principal.subject)


async def add_key(db: Database, principal: Principal, text: str, name: str | None) -> SshKey:
    user_id = _user(principal)
    principal.require_recent_mfa(STEP_UP_MAX_AGE_S)
    try:
        key = ssh_keys.parse_public_key(text)
    except ssh_keys.InvalidSshKey as exc:
        raise ValidationFailed.for_field("public_key", str(exc)) from None
    label = (name or key.comment or key.fingerprint)[: ssh_keys.MAX_NAME]
    at = now()
    async with db.unit_of_work() as uow:
        if await UserRepository(uow).get(user_id) is None:
            raise NotFound("no such user")
        repo = SshKeyRepository(uow)
        if await repo.live_by_fingerprint(key.fingerprint) is not None:
            # One key opens shells for one user only; whose it is stays unsaid.
            raise Conflict("this key is already registered")
        if await repo.count_live(user_id) >= ssh_keys.MAX_KEYS_PER_USER:
            raise Conflict(f"at most {ssh_keys.MAX_KEYS_PER_USER} SSH keys per user")
        row = {
            "id": uuid7(), "user_id": user_id, "name": label, "algorithm": key.algorithm,
            "bits": key.bits, "fingerprint": key.fingerprint, "public_key": key.openssh,
            "created_at": at,
        }  # fmt: skip
        await repo.add(row)
        await EVENTS.add_event(
            uow, ADDED, subject=str(user_id),
            payload=SshKeyAdded(
                key_id=row["id"], user_id=user_id, algorithm=key.algorithm, bits=key.bits,
                fingerprint=key.fingerprint, public_key=key.openssh, name=label, added_at=at,
            ),
        )  # fmt: skip
        await uow.commit()
    return SshKey.of({**row, "revoked_at": None})


async def list_keys(db: Database, principal: Principal) -> list[SshKey]:
    user_id = _user(principal)
    async with db.unit_of_work() as uow:
        return [SshKey.of(r) for r in await SshKeyRepository(uow).of_user(user_id)]


async def revoke_key(db: Database, principal: Principal, key_id: uuid.UUID) -> None:
    """Revoke one of the caller's keys; revoking a revoked key again changes nothing."""
    user_id = _user(principal)
    at = now()
    async with db.unit_of_work() as uow:
        repo = SshKeyRepository(uow)
        row = await repo.get(user_id, key_id)
        if row is None:
            raise NotFound("no such SSH key")
        if row["revoked_at"] is not None:
            return
        await repo.revoke(key_id, at)
        await EVENTS.add_event(
            uow, REVOKED, subject=str(user_id),
            payload=SshKeyRevoked(
                key_id=key_id, user_id=user_id, fingerprint=row["fingerprint"], revoked_at=at
            ),
        )  # fmt: skip
        await uow.commit()
