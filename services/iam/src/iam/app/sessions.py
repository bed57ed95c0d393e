"""Token grants: password (users), refresh (rotating, with reuse detection that revokes
the whole family) and client credentials (service accounts with an API key).

Every failure says only "invalid_grant": which part was wrong (account, password, tenant)
is not revealed. A reused refresh token revokes its family in a committed transaction
before the refusal is returned.
"""

import asyncio
import dataclasses
import datetime as dt
import uuid
from dataclasses import dataclass

from gpucloud_contracts.events.iam import SignedIn, SignInFailed
from iam.app.context import IamContext
from iam.app.events import EVENTS
from iam.app.identity import parse_api_key
from iam.app.mfa import verify_second_factor
from iam.app.secrets import digest, hash_password, needs_rehash, new_secret, same_digest
from iam.app.secrets import verify_password as check_password
from iam.domain.identity import normalize_email, now
from iam.domain.mfa import SECOND_FACTOR, needs_mfa_enrollment
from iam.domain.tenants import TenantStatus
from iam.domain.tokens import (
    ACCESS_TOKEN_TTL,
    REFRESH_TOKEN_PREFIX,
    REFRESH_TOKEN_TTL,
    RefreshOutcome,
    Subject,
    access_claims,
    judge_refresh,
)
from iam.store.credentials import RefreshTokenRepository
from iam.store.identity import MembershipRepository, ServiceAccountRepository, UserRepository
from iam.store.mfa import MfaRepository
from iam.store.repository import TenantRepository
from platformkit.db import UnitOfWork
from platformkit.errors import ProblemError
from platformkit.ids import uuid7


class InvalidGrant(ProblemError):
    """RFC 6749 §5.2 `invalid_grant`, as problem+json."""

    status, slug, title = 400, "invalid-grant", "invalid_grant"


class MfaRequired(ProblemError):
    """The password was right but the account has a second factor: send it as `otp`.
    (Said only after a correct password, so it reveals nothing to a guesser.)"""

    status, slug, title = 400, "mfa-required", "mfa_required"


class InvalidClient(ProblemError):
    status, slug, title = 401, "invalid-client", "invalid_client"

    def __init__(self, detail: str = "the client credentials are not valid") -> None:
        super().__init__(detail, headers={"WWW-Authenticate": 'Basic realm="gpucloud"'})


@dataclass(frozen=True)
class IssuedTokens:
    access_token: str
    expires_in: int
    refresh_token: str | None
    tenant_id: uuid.UUID


async def _user_subject(
    uow: UnitOfWork,
    user_id: uuid.UUID,
    tenant_id: uuid.UUID,
    amr: list[str],
    auth_time: dt.datetime,
) -> Subject | None:
    tenant = await TenantRepository(uow).get(tenant_id)
    if tenant is None or tenant.status != TenantStatus.ACTIVE:
        return None
    memberships = [
        m for m in await MembershipRepository(uow).of_principal(user_id) if m.tenant_id == tenant_id
    ]
    if not memberships:
        return None
    return Subject(
        id=user_id,
        kind="user",
        tenant_id=tenant_id,
        tenant_roles=frozenset(m.role for m in memberships if m.project_id is None),
        project_roles={m.project_id: frozenset({m.role}) for m in memberships if m.project_id},
        amr=tuple(amr),
        auth_time=auth_time,
    )


async def _sign(ctx: IamContext, subject: Subject) -> str:
    claims = access_claims(
        subject, issuer=ctx.issuer, audience=ctx.audience, jti=uuid7().hex, issued_at=now()
    )
    return await ctx.keys.sign(claims)


async def _new_refresh_token(uow: UnitOfWork, subject: Subject, family_id: uuid.UUID) -> str:
    secret = new_secret()
    at = now()
    await RefreshTokenRepository(uow).add(
        token_id=uuid7(), family_id=family_id, user_id=subject.id, tenant_id=subject.tenant_id,
        token_hash=digest(secret), amr=list(subject.amr), auth_time=subject.auth_time,
        created_at=at, expires_at=at + REFRESH_TOKEN_TTL,
    )  # fmt: skip
    return REFRESH_TOKEN_PREFIX + secret


async def _resolve_tenant(uow: UnitOfWork, user_id: uuid.UUID, tenant: str | None) -> uuid.UUID:
    tenant_ids = sorted(
        {m.tenant_id for m in await MembershipRepository(uow).of_principal(user_id)}
    )
    if tenant:
        for tenant_id in tenant_ids:
            found = await TenantRepository(uow).get(tenant_id)
            if found is not None and tenant in (str(found.id), found.slug):
                return found.id
        raise InvalidGrant("the credentials are not valid")
    if len(tenant_ids) == 1:
        return tenant_ids[0]
    if not tenant_ids:
        raise InvalidGrant("the account belongs to no tenant yet")
    raise InvalidGrant("the account belongs to several tenants: name one in `tenant`")


def _needs_enrollment(subject: Subject, policy_requires: bool, has_factor: bool) -> bool:
    project_roles = frozenset().union(*subject.project_roles.values())
    return needs_mfa_enrollment(policy_requires, subject.tenant_roles, project_roles, has_factor)


async def _sign_in_failed(
    ctx: IamContext, account: str, user_id: uuid.UUID | None, reason: str
) -> None:
    """A failed sign-in, for the audit log (iam.auth.v1): the user when the account exists,
    else a digest of the account name; never the password or the code."""
    subject = str(user_id) if user_id else "account:" + digest(account).hex()
    async with ctx.db.unit_of_work() as uow:
        await EVENTS.add_event(
            uow,
            "iam.auth.sign-in-failed",
            subject=subject,
            payload=SignInFailed(
                user_id=user_id, reason=reason, outcome="failure", failed_at=now()
            ),
            actor=subject,
            actor_kind="user",
        )
        await uow.commit()


async def password_grant(
    ctx: IamContext,
    username: str,
    password: str,
    tenant: str | None,
    address: str,
    otp: str | None = None,
) -> IssuedTokens:
    """Password, plus `otp` (a TOTP code or a recovery code) once the account has a second
    factor. A wrong second factor counts as a failed sign-in for the throttle, and the
    account's failures are cleared only by a complete sign-in, so the second factor cannot
    be guessed behind a known password."""
    account = normalize_email(username) or username.strip().lower()[:320]
    ctx.throttle.check(account, address)
    async with ctx.db.unit_of_work() as uow:
        found = await UserRepository(uow).by_email(account)
    stored_hash = found[1] if found else None
    if not await asyncio.to_thread(check_password, stored_hash, password) or found is None:
        ctx.throttle.failed(account, address)
        await _sign_in_failed(ctx, account, found[0].id if found else None, "credentials")
        raise InvalidGrant("the credentials are not valid")
    user, _ = found
    if stored_hash and needs_rehash(stored_hash):
        new_hash = await asyncio.to_thread(hash_password, password)
        async with ctx.db.unit_of_work() as uow:
            await UserRepository(uow).set_password_hash(user.id, new_hash)
            await uow.commit()
    async with ctx.db.unit_of_work() as uow:
        tenant_id = await _resolve_tenant(uow, user.id, tenant)
        mfa_repo = MfaRepository(uow)
        has_factor = await mfa_repo.has_active_factor(user.id)
        at = now()
        if otp:
            if not await verify_second_factor(uow, ctx.box, user.id, otp, at):
                ctx.throttle.failed(account, address)
                await _sign_in_failed(ctx, account, user.id, "second_factor")
                raise InvalidGrant("the second factor is not valid")
            amr = ["pwd", SECOND_FACTOR]
        elif has_factor:
            raise MfaRequired("this account has a second factor: send its code as `otp`")
        else:
            amr = ["pwd"]
        subject = await _user_subject(uow, user.id, tenant_id, amr, at)
        if subject is None:
            raise InvalidGrant("the tenant is not active")
        refresh: str | None = None
        if _needs_enrollment(
            subject, await mfa_repo.requires_mfa_for_admins(tenant_id), has_factor
        ):
            # The tenant requires a second factor of this admin: a token good only for
            # enrolling one, and no refresh token (sign in again once enrolled).
            subject = dataclasses.replace(subject, restricted=True)
        else:
            refresh = await _new_refresh_token(uow, subject, uuid7())
        await EVENTS.add_event(
            uow,
            "iam.auth.signed-in",
            subject=str(user.id),
            payload=SignedIn(user_id=user.id, tenant_id=tenant_id, amr=amr, signed_in_at=at),
            tenant=str(tenant_id),
            actor=str(user.id),
            actor_kind="user",
        )
        await uow.commit()
    ctx.throttle.succeeded(account, address)
    return IssuedTokens(await _sign(ctx, subject), _ttl(), refresh, tenant_id)


async def refresh_grant(ctx: IamContext, refresh_token: str) -> IssuedTokens:
    if not refresh_token.startswith(REFRESH_TOKEN_PREFIX):
        raise InvalidGrant("the refresh token is not valid")
    token_hash = digest(refresh_token[len(REFRESH_TOKEN_PREFIX) :])
    async with ctx.db.unit_of_work() as uow:
        tokens = RefreshTokenRepository(uow)
        row = await tokens.by_hash_for_update(token_hash)
        if row is None or not same_digest(bytes(row["token_hash"]), token_hash):
            raise InvalidGrant("the refresh token is not valid")
        outcome = judge_refresh(row["status"], row["expires_at"], now())
        if outcome == RefreshOutcome.REUSED:
            await tokens.revoke_family(row["family_id"])
            await uow.commit()
            raise InvalidGrant("the refresh token was already used; the session is revoked")
        if outcome == RefreshOutcome.REFUSED:
            raise InvalidGrant("the refresh token is not valid")
        # Roles are read again: a refreshed token carries the current memberships.
        subject = await _user_subject(
            uow, row["user_id"], row["tenant_id"], list(row["amr"]), row["auth_time"]
        )
        if subject is None:
            await tokens.revoke_family(row["family_id"])
            await uow.commit()
            raise InvalidGrant("the account no longer has access to this tenant")
        if SECOND_FACTOR not in subject.amr and _needs_enrollment(
            subject,
            await MfaRepository(uow).requires_mfa_for_admins(subject.tenant_id),
            has_factor=False,
        ):
            # The policy was switched on (or the user became an admin) after this sign-in.
            await tokens.revoke_family(row["family_id"])
            await uow.commit()
            raise InvalidGrant("the tenant requires a second factor: sign in again")
        await tokens.mark_used(row["id"])
        refresh = await _new_refresh_token(uow, subject, row["family_id"])
        await uow.commit()
    return IssuedTokens(await _sign(ctx, subject), _ttl(), refresh, subject.tenant_id)


async def client_credentials_grant(
    ctx: IamContext, client_id: str | None, client_secret: str
) -> IssuedTokens:
    parsed = parse_api_key(client_secret)
    if parsed is None:
        raise InvalidClient()
    key_id, secret = parsed
    async with ctx.db.unit_of_work() as uow:
        repo = ServiceAccountRepository(uow)
        found = await repo.key(key_id)
        if found is None or not same_digest(found[1], digest(secret)):
            raise InvalidClient()
        key, _ = found
        if not key.usable(now()):
            raise InvalidClient("the API key is revoked or expired")
        sa = await repo.by_id(key.service_account_id)
        if sa is None or (client_id and client_id != str(sa.id)):
            raise InvalidClient()
        tenant = await TenantRepository(uow).get(sa.tenant_id)
        if tenant is None or tenant.status != TenantStatus.ACTIVE:
            raise InvalidClient("the tenant is not active")
        roles = [
            m.role
            for m in await MembershipRepository(uow).of_principal(sa.id)
            if m.project_id == sa.project_id
        ]
    subject = Subject(
        id=sa.id,
        kind="service_account",
        tenant_id=sa.tenant_id,
        tenant_roles=frozenset(),
        project_roles={sa.project_id: frozenset(roles)},
        amr=(),
        auth_time=now(),
        api_key_id=key.id,
    )
    return IssuedTokens(await _sign(ctx, subject), _ttl(), None, sa.tenant_id)


def _ttl() -> int:
    return int(ACCESS_TOKEN_TTL.total_seconds())
