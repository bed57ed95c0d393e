"""Accounts you can trust: sign-up and registration verified by an email link, roles
offered by invitation and bound only when the address's owner accepts.

Nothing exists before its address is proven. A sign-up (tenant + owner) or a registration
(a user without a tenant) writes only a pending verification holding the password hash;
the link sent to the address creates the rows, in one transaction with their events. So an
address someone registers without reading it gains them nothing, and there is no
"unverified user" to restrict: before the link is used, signing in fails exactly as for an
unknown account. Sign-up and registration answer the same 202 whether or not the address
has an account (that owner gets a "you already have an account" message instead), after
the same argon2id hashing, and the messages leave in the background: no enumeration by
answer or by timing.
"""

import asyncio
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from iam.app.context import IamContext
from iam.app.identity import (
    _actor,
    _email,
    _granted,
    _granter_roles,
    _password,
    _project,
    _project_created,
    _remove,
    _user_registered,
)
from iam.app.mail import Mail
from iam.app.secrets import digest, hash_password, new_secret
from iam.app.secrets import verify_password as check_password
from iam.app.tenants import add_tenant, check_name, check_slug
from iam.domain import permissions
from iam.domain.accounts import (
    INVITATION_PREFIX,
    INVITATION_TTL,
    VERIFICATION_PREFIX,
    VERIFICATION_TTL,
    InvitationState,
    existing_account_mail,
    invitation_mail,
    invitation_state,
    verification_mail,
)
from iam.domain.identity import DEFAULT_PROJECT_SLUG, Membership, Project, User, now, role_problem
from iam.domain.tenants import Tenant
from iam.store.accounts import Invitation, InvitationRepository, VerificationRepository
from iam.store.identity import (
    AlreadyExists,
    MembershipRepository,
    ProjectRepository,
    UserRepository,
)
from iam.store.repository import TenantRepository
from platformkit.auth import Principal
from platformkit.db import Database, UnitOfWork
from platformkit.errors import Conflict, Forbidden, NotFound, ValidationFailed
from platformkit.idempotency import IdempotentRequest, StoredResponse, lookup, run_once
from platformkit.ids import uuid7

# -- sign-up and registration -----------------------------------------------------------


@dataclass(frozen=True)
class Registration:
    """A sign-up (with a tenant) or a registration (without one)."""

    email: str
    password: str
    tenant_name: str | None = None
    slug: str | None = None
    idempotency_key: str | None = None

    def __repr__(self) -> str:
        return f"Registration(slug={self.slug!r})"


async def register(
    ctx: IamContext, command: Registration, encode: Callable[[None], StoredResponse]
) -> StoredResponse:
    """Write a pending verification and mail its link (or, for an address with an account,
    mail that owner a notice); the same answer either way."""
    signup = command.slug is not None
    if signup:
        check_name("tenant_name", command.tenant_name or "")
        check_slug("slug", command.slug or "")
    email = _email(command.email)
    _password(command.password)
    scope = "iam.signup" if signup else "iam.register"
    # The password is not part of the fingerprint: the stored record must not become an
    # oracle for it.
    request = IdempotentRequest.of(
        scope, command.idempotency_key, [command.tenant_name, command.slug, email]
    )
    if (stored := await lookup(db := ctx.db, request)) is not None:
        return stored
    if signup:
        async with db.unit_of_work() as uow:
            if await TenantRepository(uow).slug_taken(command.slug or ""):
                # Said whatever the address: slugs are names, not accounts.
                raise Conflict(f"slug {command.slug!r} is taken")
    password_hash = await asyncio.to_thread(hash_password, command.password)
    outgoing: list[Mail] = []

    async def work(uow: UnitOfWork) -> None:
        outgoing.clear()
        if await UserRepository(uow).by_email(email) is not None:
            subject, body = existing_account_mail(f"{ctx.public_url}/login")
            outgoing.append(Mail(email, subject, body))
            return
        secret = new_secret()
        at = now()
        await VerificationRepository(uow).add(
            id=uuid7(), token_hash=digest(secret), purpose="signup" if signup else "register",
            email=email, password_hash=password_hash, tenant_name=command.tenant_name,
            tenant_slug=command.slug, created_at=at, expires_at=at + VERIFICATION_TTL,
        )  # fmt: skip
        link = f"{ctx.public_url}/verify?token={VERIFICATION_PREFIX}{secret}"
        subject, body = verification_mail(link, "signup" if signup else "register")
        outgoing.append(Mail(email, subject, body))

    reply = await run_once(db, request, work, encode)
    ctx.mailer.send_later(outgoing)
    return reply


@dataclass(frozen=True)
class Verified:
    user: User
    tenant: Tenant | None
    project: Project | None


def _token_secret(token: str, prefix: str) -> bytes:
    if not token.startswith(prefix) or len(token) > 200:
        raise ValidationFailed.for_field("token", "is not a valid, unused and unexpired link")
    return digest(token[len(prefix) :])


async def verify_email(ctx: IamContext, token: str) -> Verified:
    """Spend the link: the user (and for a sign-up the tenant, its default project and the
    owner's membership) come to exist now, with their events, in one transaction."""
    token_hash = _token_secret(token, VERIFICATION_PREFIX)
    async with ctx.db.unit_of_work() as uow:
        pending = await VerificationRepository(uow).consume(token_hash, now())
        if pending is None:
            raise ValidationFailed.for_field("token", "is not a valid, unused and unexpired link")
        user = User.new(pending.email)
        try:
            await UserRepository(uow).add(user, pending.password_hash)
        except AlreadyExists:
            # Two sign-ups of one address: the first link used made the account.
            raise Conflict("this address already has an account; sign in instead") from None
        await _user_registered(uow, user)
        tenant = project = None
        if pending.tenant_slug is not None:
            tenant = Tenant.new(pending.tenant_name or pending.tenant_slug, pending.tenant_slug)
            await add_tenant(uow, tenant)
            project = Project.new(tenant.id, "Default", DEFAULT_PROJECT_SLUG)
            await ProjectRepository(uow).add(project)
            owner = Membership.new(tenant.id, user.id, "owner")
            await MembershipRepository(uow).add(owner)
            await _project_created(uow, project, user.id)
            await _granted(uow, owner, None)
        await uow.commit()
    return Verified(user, tenant, project)


# -- invitations ------------------------------------------------------------------------


async def invite(
    ctx: IamContext,
    tenant_id: uuid.UUID,
    email: str,
    role: str,
    by: Principal,
    project_id: uuid.UUID | None = None,
) -> Invitation:
    """Offer `role` in the tenant (or one project) to an address. It binds only when the
    address's owner accepts with the token mailed to it (`accept_invitation`); a newer
    invitation of the same address and scope replaces a pending one."""
    email = _email(email)
    problem = role_problem(role, project=project_id is not None)
    if problem:
        raise ValidationFailed.for_field("role", problem)
    if not permissions.may_grant(_granter_roles(by, project_id), role):
        raise Forbidden(f"you may not grant the role {role!r}")
    secret = new_secret()
    async with ctx.db.unit_of_work() as uow:
        if project_id is not None:
            await _project(uow, tenant_id, project_id)
        tenant = await TenantRepository(uow).get(tenant_id)
        if tenant is None:
            raise NotFound("no such tenant")
        at = now()
        invitation = Invitation(
            id=uuid7(), tenant_id=tenant_id, project_id=project_id, email=email, role=role,
            invited_by=_actor(by), created_at=at, expires_at=at + INVITATION_TTL,
            accepted_at=None, revoked_at=None,
        )  # fmt: skip
        invitations = InvitationRepository(uow)
        await invitations.revoke_pending(tenant_id, project_id, email, at)
        await invitations.add(invitation, digest(secret))
        await uow.commit()
    link = f"{ctx.public_url}/invitations/accept?token={INVITATION_PREFIX}{secret}"
    subject, body = invitation_mail(link, role, tenant.name)
    ctx.mailer.send_later([Mail(email, subject, body)])
    return invitation


@dataclass(frozen=True)
class AcceptInvitation:
    token: str
    password: str
    address: str  # the client's, for the sign-in throttle

    def __repr__(self) -> str:
        return "AcceptInvitation()"


async def accept_invitation(ctx: IamContext, command: AcceptInvitation) -> Membership:
    """The token proves the address; the password proves its account (or, when the
    address has none yet, becomes the new account's: the invitation verified it). Then the
    role binds, replacing the user's previous role in that scope."""
    token_hash = _token_secret(command.token, INVITATION_PREFIX)
    async with ctx.db.unit_of_work() as uow:
        invitations = InvitationRepository(uow)
        invitation = await invitations.by_token_for_update(token_hash)
        at = now()
        state = None
        if invitation is not None:
            state = invitation_state(
                expires_at=invitation.expires_at,
                accepted_at=invitation.accepted_at,
                revoked_at=invitation.revoked_at,
                at=at,
            )
        if invitation is None or state != InvitationState.PENDING:
            reason = f"was {state.value}" if state else "is not valid"
            raise ValidationFailed.for_field("token", f"the invitation {reason}")
        users = UserRepository(uow)
        found = await users.by_email(invitation.email)
        if found is not None:
            ctx.throttle.check(invitation.email, command.address)
            if not await asyncio.to_thread(check_password, found[1], command.password):
                ctx.throttle.failed(invitation.email, command.address)
                raise ValidationFailed.for_field("password", "is not this account's password")
            user = found[0]
        else:
            _password(command.password)
            user = User.new(invitation.email)
            await users.add(user, await asyncio.to_thread(hash_password, command.password))
            await _user_registered(uow, user)
        memberships = MembershipRepository(uow)
        previous = await memberships.in_scope(invitation.tenant_id, user.id, invitation.project_id)
        membership = Membership.new(
            invitation.tenant_id, user.id, invitation.role, project_id=invitation.project_id
        )
        if previous is not None and previous.role == invitation.role:
            membership = previous
        else:
            if previous is not None:
                await _remove(uow, previous, invitation.invited_by)
            await memberships.add(membership)
            await _granted(uow, membership, invitation.invited_by)
        await invitations.accept(invitation.id, user.id, at)
        await uow.commit()
    return membership


async def list_invitations(db: Database, tenant_id: uuid.UUID) -> list[Invitation]:
    async with db.unit_of_work() as uow:
        return await InvitationRepository(uow).of_tenant(tenant_id)


async def revoke_invitation(
    db: Database, tenant_id: uuid.UUID, invitation_id: uuid.UUID, by: Principal
) -> None:
    async with db.unit_of_work() as uow:
        invitations = InvitationRepository(uow)
        invitation = await invitations.get(tenant_id, invitation_id)
        if invitation is None:
            raise NotFound("no such invitation")
        if not permissions.may_grant(_granter_roles(by, invitation.project_id), invitation.role):
            raise Forbidden(f"you may not take back an invitation to {invitation.role!r}")
        await invitations.revoke(invitation.id, now())
        await uow.commit()
