"""Sign-up, users, projects, memberships, service accounts and API keys. Each use case is
one unit of work: the rows, their outbox events (and the idempotency record) commit
together or not at all."""

import asyncio
import datetime as dt
import uuid

from gpucloud_contracts.events.iam import (
    ApiKeyIssued,
    ApiKeyRevoked,
    MembershipGranted,
    MembershipRevoked,
    ProjectCreated,
    ServiceAccountCreated,
    UserRegistered,
)
from iam.app.events import EVENTS
from iam.app.secrets import digest, hash_password, new_secret
from iam.app.tenants import check_name, check_slug
from iam.domain import permissions
from iam.domain.identity import (
    ApiKey,
    IdentityEvent,
    Membership,
    Project,
    ServiceAccount,
    User,
    normalize_email,
    now,
    password_problem,
    role_problem,
)
from iam.domain.tokens import API_KEY_PREFIX
from iam.store.identity import (
    AlreadyExists,
    MembershipRepository,
    ProjectRepository,
    ServiceAccountRepository,
    UserRepository,
)
from platformkit.auth import Principal
from platformkit.db import Database, UnitOfWork
from platformkit.errors import Conflict, Forbidden, NotFound, ValidationFailed
from platformkit.ids import uuid7

MAX_KEY_LIFETIME = dt.timedelta(days=365)


def _actor(principal: Principal | None) -> uuid.UUID | None:
    if principal is None or principal.kind != "user":
        return None
    return uuid.UUID(principal.subject)


def _email(email: str) -> str:
    normalized = normalize_email(email)
    if normalized is None:
        raise ValidationFailed.for_field("email", "is not an email address")
    return normalized


def _password(password: str) -> None:
    problem = password_problem(password)
    if problem:
        raise ValidationFailed.for_field("password", problem)


# -- events ---------------------------------------------------------------------------


async def _user_registered(uow: UnitOfWork, user: User) -> None:
    await EVENTS.add_event(
        uow, IdentityEvent.USER_REGISTERED, subject=str(user.id),
        payload=UserRegistered(user_id=user.id, email=user.email, registered_at=user.created_at),
    )  # fmt: skip


async def _project_created(uow: UnitOfWork, project: Project, by: uuid.UUID | None) -> None:
    await EVENTS.add_event(
        uow, IdentityEvent.PROJECT_CREATED, subject=str(project.id), tenant=str(project.tenant_id),
        payload=ProjectCreated(
            project_id=project.id, tenant_id=project.tenant_id, name=project.name,
            slug=project.slug, created_at=project.created_at, created_by=by,
        ),
    )  # fmt: skip


async def _granted(uow: UnitOfWork, m: Membership, by: uuid.UUID | None) -> None:
    await EVENTS.add_event(
        uow, IdentityEvent.MEMBERSHIP_GRANTED, subject=str(m.tenant_id), tenant=str(m.tenant_id),
        payload=MembershipGranted(
            membership_id=m.id, tenant_id=m.tenant_id, project_id=m.project_id,
            principal_id=m.principal_id, principal_kind=m.principal_kind, role=m.role,
            granted_at=m.created_at, granted_by=by,
        ),
    )  # fmt: skip


async def _revoked(uow: UnitOfWork, m: Membership, by: uuid.UUID | None) -> None:
    await EVENTS.add_event(
        uow, IdentityEvent.MEMBERSHIP_REVOKED, subject=str(m.tenant_id), tenant=str(m.tenant_id),
        payload=MembershipRevoked(
            membership_id=m.id, tenant_id=m.tenant_id, project_id=m.project_id,
            principal_id=m.principal_id, principal_kind=m.principal_kind, role=m.role,
            revoked_at=now(), revoked_by=by,
        ),
    )  # fmt: skip


# -- users ----------------------------------------------------------------------------


async def create_user(db: Database, email: str, password: str) -> User:
    """An operator's account for someone (the operator vouches for the address); everyone
    else comes in through a verified sign-up or an accepted invitation (app.accounts)."""
    email = _email(email)
    _password(password)
    password_hash = await asyncio.to_thread(hash_password, password)
    async with db.unit_of_work() as uow:
        user = User.new(email)
        try:
            await UserRepository(uow).add(user, password_hash)
        except AlreadyExists:
            raise Conflict("an account with this email exists") from None
        await _user_registered(uow, user)
        await uow.commit()
    return user


# -- projects -------------------------------------------------------------------------


async def create_project(
    db: Database, tenant_id: uuid.UUID, name: str, slug: str, by: Principal
) -> Project:
    check_name("name", name)
    check_slug("slug", slug)
    async with db.unit_of_work() as uow:
        project = Project.new(tenant_id, name, slug)
        try:
            await ProjectRepository(uow).add(project)
        except AlreadyExists:
            raise Conflict(f"project slug {slug!r} is taken in this tenant") from None
        await _project_created(uow, project, _actor(by))
        await uow.commit()
    return project


async def get_project(db: Database, tenant_id: uuid.UUID, project_id: uuid.UUID) -> Project:
    async with db.unit_of_work() as uow:
        return await _project(uow, tenant_id, project_id)


async def _project(uow: UnitOfWork, tenant_id: uuid.UUID, project_id: uuid.UUID) -> Project:
    project = await ProjectRepository(uow).get(tenant_id, project_id)
    if project is None:
        raise NotFound("no such project")
    return project


async def list_projects(db: Database, tenant_id: uuid.UUID) -> list[Project]:
    async with db.unit_of_work() as uow:
        return await ProjectRepository(uow).list(tenant_id)


# -- memberships ----------------------------------------------------------------------


def _granter_roles(by: Principal, project_id: uuid.UUID | None) -> frozenset[str]:
    if by.is_operator:
        return frozenset({"owner"})
    return by.roles_in_project(project_id) if project_id else by.roles


async def _remove(uow: UnitOfWork, membership: Membership, by: uuid.UUID | None) -> None:
    memberships = MembershipRepository(uow)
    if (
        membership.project_id is None
        and membership.role == "owner"
        and await memberships.count_owners(membership.tenant_id) <= 1
    ):
        raise Conflict("a tenant keeps at least one owner")
    await memberships.delete(membership.id)
    await _revoked(uow, membership, by)


async def revoke_membership(
    db: Database,
    tenant_id: uuid.UUID,
    membership_id: uuid.UUID,
    by: Principal,
    project_id: uuid.UUID | None = None,
) -> None:
    async with db.unit_of_work() as uow:
        membership = await MembershipRepository(uow).get(tenant_id, membership_id)
        if membership is None or membership.project_id != project_id:
            raise NotFound("no such membership")
        if not permissions.may_grant(_granter_roles(by, project_id), membership.role):
            raise Forbidden(f"you may not take away the role {membership.role!r}")
        await _remove(uow, membership, _actor(by))
        await uow.commit()


async def list_members(
    db: Database, tenant_id: uuid.UUID, project_id: uuid.UUID | None = None
) -> list[tuple[Membership, str | None]]:
    async with db.unit_of_work() as uow:
        if project_id is not None:
            await _project(uow, tenant_id, project_id)
        return await MembershipRepository(uow).of_tenant(tenant_id, project_id)


# -- service accounts and API keys ----------------------------------------------------


async def create_service_account(
    db: Database, tenant_id: uuid.UUID, project_id: uuid.UUID, name: str, role: str,
    by: Principal,
) -> ServiceAccount:  # fmt: skip
    check_name("name", name)
    problem = role_problem(role, project=True)
    if problem:
        raise ValidationFailed.for_field("role", problem)
    if not permissions.may_grant(_granter_roles(by, project_id), role):
        raise Forbidden(f"you may not grant the role {role!r}")
    async with db.unit_of_work() as uow:
        await _project(uow, tenant_id, project_id)
        sa = ServiceAccount.new(tenant_id, project_id, name)
        await ServiceAccountRepository(uow).add(sa)
        membership = Membership.new(
            tenant_id, sa.id, role, project_id=project_id, principal_kind="service_account"
        )
        await MembershipRepository(uow).add(membership)
        await EVENTS.add_event(
            uow, IdentityEvent.SERVICE_ACCOUNT_CREATED, subject=str(sa.id), tenant=str(tenant_id),
            payload=ServiceAccountCreated(
                service_account_id=sa.id, tenant_id=tenant_id, project_id=project_id,
                name=sa.name, role=role, created_at=sa.created_at, created_by=_actor(by),
            ),
        )  # fmt: skip
        await _granted(uow, membership, _actor(by))
        await uow.commit()
    return sa


async def list_service_accounts(
    db: Database, tenant_id: uuid.UUID, project_id: uuid.UUID
) -> list[ServiceAccount]:
    async with db.unit_of_work() as uow:
        await _project(uow, tenant_id, project_id)
        return await ServiceAccountRepository(uow).of_project(tenant_id, project_id)


async def _service_account(
    uow: UnitOfWork, tenant_id: uuid.UUID, project_id: uuid.UUID, sa_id: uuid.UUID
) -> ServiceAccount:
    sa = await ServiceAccountRepository(uow).get(tenant_id, project_id, sa_id)
    if sa is None:
        raise NotFound("no such service account")
    return sa


def format_api_key(key_id: uuid.UUID, secret: str) -> str:
    return f"{API_KEY_PREFIX}{key_id.hex}_{secret}"


def parse_api_key(api_key: str) -> tuple[uuid.UUID, str] | None:
    if not api_key.startswith(API_KEY_PREFIX):
        return None
    key_hex, _, secret = api_key[len(API_KEY_PREFIX) :].partition("_")
    try:
        return uuid.UUID(hex=key_hex), secret
    except ValueError:
        return None


async def issue_api_key(
    db: Database, tenant_id: uuid.UUID, project_id: uuid.UUID, sa_id: uuid.UUID,
    by: Principal, *, lifetime: dt.timedelta, replaces: uuid.UUID | None = None,
    overlap: dt.timedelta = dt.timedelta(hours=24),
) -> tuple[ApiKey, str]:  # fmt: skip
    """A new key, returned once in full. With `replaces`, the old key stays valid for the
    overlap (rotation without downtime) and then expires."""
    if not dt.timedelta(minutes=5) <= lifetime <= MAX_KEY_LIFETIME:
        raise ValidationFailed.for_field("expires_in_days", "must be 1 to 365 days")
    async with db.unit_of_work() as uow:
        sa = await _service_account(uow, tenant_id, project_id, sa_id)
        repo = ServiceAccountRepository(uow)
        at = now()
        if replaces is not None:
            old = await repo.key(replaces)
            if old is None or old[0].service_account_id != sa.id:
                raise NotFound("no such API key to rotate")
            await repo.shorten_key(replaces, at + overlap)
        key_id, secret = uuid7(), new_secret()
        plaintext = format_api_key(key_id, secret)
        key = ApiKey(key_id, sa.id, plaintext[:16], at, at + lifetime)
        await repo.add_key(key, digest(secret))
        await EVENTS.add_event(
            uow, IdentityEvent.API_KEY_ISSUED, subject=str(sa.id), tenant=str(tenant_id),
            payload=ApiKeyIssued(
                key_id=key.id, service_account_id=sa.id, tenant_id=tenant_id,
                project_id=project_id, prefix=key.prefix, issued_at=at,
                expires_at=key.expires_at, issued_by=_actor(by),
            ),
        )  # fmt: skip
        await uow.commit()
    return key, plaintext


async def revoke_api_key(
    db: Database, tenant_id: uuid.UUID, project_id: uuid.UUID, sa_id: uuid.UUID,
    key_id: uuid.UUID, by: Principal,
) -> None:  # fmt: skip
    async with db.unit_of_work() as uow:
        sa = await _service_account(uow, tenant_id, project_id, sa_id)
        repo = ServiceAccountRepository(uow)
        found = await repo.key(key_id)
        if found is None or found[0].service_account_id != sa.id:
            raise NotFound("no such API key")
        if found[0].revoked_at is not None:
            return
        at = now()
        await repo.revoke_key(key_id, at)
        await EVENTS.add_event(
            uow, IdentityEvent.API_KEY_REVOKED, subject=str(sa.id), tenant=str(tenant_id),
            payload=ApiKeyRevoked(
                key_id=key_id, service_account_id=sa.id, tenant_id=tenant_id,
                project_id=project_id, revoked_at=at, revoked_by=_actor(by),
            ),
        )  # fmt: skip
        await uow.commit()


async def list_api_keys(
    db: Database, tenant_id: uuid.UUID, project_id: uuid.UUID, sa_id: uuid.UUID
) -> list[ApiKey]:
    async with db.unit_of_work() as uow:
        sa = await _service_account(uow, tenant_id, project_id, sa_id)
        return await ServiceAccountRepository(uow).keys_of(sa.id)
