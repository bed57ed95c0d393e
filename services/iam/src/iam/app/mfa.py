"""Second factors: TOTP enrollment and activation, recovery codes, the check a sign-in
makes, and the tenant policy that requires MFA for admins.

The TOTP secret is returned once, at enrollment, and stored sealed (app.secrets.SecretBox);
recovery codes are returned once, at activation, and stored as digests. Neither appears in
an event, a log or any later response.
"""

import datetime as dt
import uuid
from dataclasses import dataclass
from typing import Any

from gpucloud_contracts.events.iam import TenantMfaPolicyChanged, UserMfaEnabled
from iam.app.context import IamContext
from iam.app.events import EVENTS
from iam.app.secrets import SecretBox, digest
from iam.domain import mfa
from iam.domain.identity import IdentityEvent, now
from iam.domain.tenants import TenantEvent
from iam.store.identity import UserRepository
from iam.store.mfa import MfaRepository
from iam.store.repository import TenantRepository
from platformkit.auth import Principal
from platformkit.db import Database, UnitOfWork
from platformkit.errors import Conflict, Forbidden, NotFound, ValidationFailed


@dataclass(frozen=True)
class Enrollment:
    secret: str
    otpauth_uri: str


@dataclass(frozen=True)
class MfaStatus:
    totp: str  # "none" | "pending" | "active"
    recovery_codes_left: int


def _user_id(principal: Principal) -> uuid.UUID:
    if principal.kind != "user":
        raise Forbidden("only users have second factors")
    return uuid.UUID(principal.subject)


async def enroll_totp(ctx: IamContext, principal: Principal) -> Enrollment:
    """A new pending TOTP factor; the secret is shown this once. An active factor is not
    replaced here (that would let a stolen password-only session swap it)."""
    user_id = _user_id(principal)
    secret = mfa.new_totp_secret()
    async with ctx.db.unit_of_work() as uow:
        user = await UserRepository(uow).get(user_id)
        if user is None:
            raise NotFound("no such user")
        repo = MfaRepository(uow)
        existing = await repo.factor(user_id, for_update=True)
        if existing is not None and existing["status"] == mfa.FactorStatus.ACTIVE:
            raise Conflict("a second factor is already active")
        sealed = ctx.box.seal(secret.encode(), user_id.bytes)
        await repo.put_pending(user_id, sealed, ctx.box.encrypts, now())
        await uow.commit()
    return Enrollment(secret, mfa.provisioning_uri(secret, user.email))


async def activate_totp(ctx: IamContext, principal: Principal, code: str) -> list[str]:
    """Prove the authenticator works; returns the recovery codes (shown this once)."""
    user_id = _user_id(principal)
    at = now()
    async with ctx.db.unit_of_work() as uow:
        repo = MfaRepository(uow)
        factor = await repo.factor(user_id, for_update=True)
        if factor is None:
            raise NotFound("no TOTP enrollment: POST /v1/iam/me/mfa/totp first")
        if factor["status"] == mfa.FactorStatus.ACTIVE:
            raise Conflict("the second factor is already active")
        secret = _secret(ctx.box, factor, user_id)
        step = mfa.match_totp(secret, code, at, None)
        if step is None:
            raise ValidationFailed.for_field("code", "is not the authenticator's current code")
        await repo.activate(user_id, step, at)
        codes = mfa.new_recovery_codes()
        await repo.replace_recovery_codes(
            user_id, [digest(mfa.normalize_recovery_code(c)) for c in codes], at
        )
        await EVENTS.add_event(
            uow, IdentityEvent.USER_MFA_ENABLED, subject=str(user_id),
            payload=UserMfaEnabled(user_id=user_id, method="totp", enabled_at=at),
        )  # fmt: skip
        await uow.commit()
    return codes


async def status(ctx: IamContext, principal: Principal) -> MfaStatus:
    user_id = _user_id(principal)
    async with ctx.db.unit_of_work() as uow:
        repo = MfaRepository(uow)
        factor = await repo.factor(user_id)
        left = await repo.recovery_codes_left(user_id)
    return MfaStatus(factor["status"] if factor else "none", left)


def _secret(box: SecretBox, factor: Any, user_id: uuid.UUID) -> str:
    return box.open(bytes(factor["secret"]), factor["encrypted"], user_id.bytes).decode()


async def verify_second_factor(
    uow: UnitOfWork, box: SecretBox, user_id: uuid.UUID, code: str, at: dt.datetime
) -> bool:
    """A current TOTP code (not used before) or an unused recovery code, spent atomically
    in `uow`: the caller commits with the tokens it issues."""
    repo = MfaRepository(uow)
    factor = await repo.factor(user_id)
    if factor is None or factor["status"] != mfa.FactorStatus.ACTIVE:
        return False
    if mfa.looks_like_totp(code):
        step = mfa.match_totp(_secret(box, factor, user_id), code, at, factor["last_step"])
        return step is not None and await repo.accept_step(user_id, step)
    return await repo.use_recovery_code(user_id, digest(mfa.normalize_recovery_code(code)))


async def requires_mfa_for_admins(db: Database, tenant_id: uuid.UUID) -> bool:
    async with db.unit_of_work() as uow:
        return await MfaRepository(uow).requires_mfa_for_admins(tenant_id)


async def set_policy(
    db: Database, tenant_id: uuid.UUID, require_mfa_for_admins: bool, by: Principal
) -> bool:
    at = now()
    async with db.unit_of_work() as uow:
        if await TenantRepository(uow).get(tenant_id) is None:
            raise NotFound("no such tenant")
        await MfaRepository(uow).set_policy(tenant_id, require_mfa_for_admins, at)
        await EVENTS.add_event(
            uow, TenantEvent.MFA_POLICY_CHANGED, subject=str(tenant_id), tenant=str(tenant_id),
            payload=TenantMfaPolicyChanged(
                tenant_id=tenant_id, require_mfa_for_admins=require_mfa_for_admins,
                changed_at=at, changed_by=uuid.UUID(by.subject) if by.kind == "user" else None,
            ),
        )  # fmt: skip
        await uow.commit()
    return require_mfa_for_admins
