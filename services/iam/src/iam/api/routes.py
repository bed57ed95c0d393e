"""iam's HTTP routes. Public: sign-up and registration (each answered "check your email"),
email verification, accepting an invitation, the token endpoint, JWKS and OIDC discovery.
Creating a bare tenant or a user directly is an operator's. Every other route declares the
action it performs and is authorized by `iam.api.authorization.authorize`."""

import dataclasses
import datetime as dt
import uuid
from typing import Annotated, Any

from litestar import Controller, Request, Response, delete, get, post, put
from litestar.datastructures import State
from litestar.enums import RequestEncodingType
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import Body, Parameter

from iam.api.authorization import guarded, public
from iam.api.schemas import (
    AcceptInvitationIn,
    ApiKeyCreate,
    ApiKeyIssuedOut,
    ApiKeyOut,
    InvitationOut,
    MemberGrant,
    MembershipOut,
    MeOut,
    MfaPolicy,
    MfaStatusOut,
    ProjectCreate,
    ProjectOut,
    RecoveryCodesOut,
    ServiceAccountCreate,
    ServiceAccountOut,
    SigningKeyOut,
    SignUpIn,
    TenantCreate,
    TenantOut,
    TenantPage,
    TenantSuspend,
    TokenOut,
    TotpEnrollmentOut,
    TotpVerifyIn,
    UserCreate,
    UserOut,
    VerificationSent,
    VerifiedOut,
    VerifyEmailIn,
)
from iam.api.ssh_keys import SshKeyController
from iam.app import accounts, identity, mfa, sessions
from iam.app.context import IamContext
from iam.app.tenants import CreateTenant, create_tenant, get_tenant, list_tenants, suspend_tenant
from iam.app.throttle import client_address
from iam.domain.accounts import invitation_state
from iam.domain.identity import ApiKey, Membership, Project, ServiceAccount, User, now
from iam.domain.permissions import Action
from iam.domain.tenants import Tenant
from iam.store.accounts import Invitation
from platformkit.auth import Principal
from platformkit.db import Database
from platformkit.errors import PROBLEM_JSON, BadRequest, Problem
from platformkit.http import json_reply, respond
from platformkit.idempotency import check_key

IdempotencyKey = Annotated[str | None, Parameter(header="Idempotency-Key")]
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


def _tenant(tenant: Tenant) -> TenantOut:
    return TenantOut(
        id=tenant.id,
        name=tenant.name,
        slug=tenant.slug,
        status=tenant.status.value,
        created_at=tenant.created_at,
    )


def _user(user: User) -> UserOut:
    return UserOut(id=user.id, email=user.email, created_at=user.created_at)


def _project(p: Project) -> ProjectOut:
    return ProjectOut(
        id=p.id, tenant_id=p.tenant_id, name=p.name, slug=p.slug, created_at=p.created_at
    )


def _membership(m: Membership, email: str | None) -> MembershipOut:
    return MembershipOut(
        id=m.id, tenant_id=m.tenant_id, project_id=m.project_id, principal_id=m.principal_id,
        principal_kind=m.principal_kind, role=m.role, email=email, created_at=m.created_at,
    )  # fmt: skip


def _sa(sa: ServiceAccount) -> ServiceAccountOut:
    return ServiceAccountOut(
        id=sa.id, tenant_id=sa.tenant_id, project_id=sa.project_id, name=sa.name,
        created_at=sa.created_at,
    )  # fmt: skip


def _key(k: ApiKey) -> ApiKeyOut:
    return ApiKeyOut(
        id=k.id, service_account_id=k.service_account_id, prefix=k.prefix,
        created_at=k.created_at, expires_at=k.expires_at, revoked_at=k.revoked_at,
    )  # fmt: skip


def _invitation(i: Invitation) -> InvitationOut:
    state = invitation_state(
        expires_at=i.expires_at, accepted_at=i.accepted_at, revoked_at=i.revoked_at, at=now()
    )
    return InvitationOut(
        id=i.id, tenant_id=i.tenant_id, project_id=i.project_id, email=i.email, role=i.role,
        state=state.value, created_at=i.created_at, expires_at=i.expires_at,  # type: ignore[arg-type]
    )  # fmt: skip


_SENT = VerificationSent(
    status="verification_sent",
    detail="check your email: the link we sent finishes the sign-up (valid 24 hours, once)",
)


def _sent(_: None) -> Any:
    return json_reply(_SENT, status=202)


_CONFLICT = ResponseSpec(
    Problem, description="Conflict", media_type=PROBLEM_JSON, generate_examples=False
)


class TenantController(Controller):
    path = "/v1/iam/tenants"
    tags = ["tenants"]

    @post(
        "/",
        operation_id="createTenant",
        status_code=201,
        responses={
            201: ResponseSpec(
                TenantOut, description="The tenant (or the stored replay)", generate_examples=False
            ),
            409: _CONFLICT,
        },
        **guarded(Action.OPERATE),
    )
    async def create(
        self, data: TenantCreate, db: Database, principal: Principal,
        idempotency_key: IdempotencyKey = None,
    ) -> Response[bytes]:  # fmt: skip
        """A bare tenant, no owner (an operator's; people sign up)."""
        reply = await create_tenant(
            db,
            CreateTenant(data.name, data.slug, check_key(idempotency_key)),
            lambda tenant: json_reply(_tenant(tenant)),
        )
        return respond(reply)

    @get("/{tenant_id:uuid}", operation_id="getTenant", **guarded(Action.TENANT_READ))
    async def retrieve(self, tenant_id: uuid.UUID, db: Database, principal: Principal) -> TenantOut:
        return _tenant(await get_tenant(db, tenant_id))

    @get("/", operation_id="listTenants", **guarded(Action.OPERATE))
    async def index(
        self,
        db: Database,
        principal: Principal,
        limit: Annotated[int, Parameter(ge=1, le=500)] = 100,
        after: uuid.UUID | None = None,
    ) -> TenantPage:
        tenants = await list_tenants(db, limit, after)
        next_after = tenants[-1].id if len(tenants) == limit else None
        return TenantPage(items=[_tenant(t) for t in tenants], next_after=next_after)

    @post(
        "/{tenant_id:uuid}/suspend",
        operation_id="suspendTenant",
        status_code=200,
        **guarded(Action.OPERATE),
    )
    async def suspend(
        self, tenant_id: uuid.UUID, data: TenantSuspend, db: Database, principal: Principal
    ) -> TenantOut:
        return _tenant(await suspend_tenant(db, tenant_id, data.reason))


class AccountController(Controller):
    path = "/v1/iam"
    tags = ["accounts"]

    @post(
        "/signup",
        operation_id="signUp",
        status_code=202,
        responses={
            202: ResponseSpec(VerificationSent, description="Check your email (whether or not"
                              " the address has an account)", generate_examples=False),
            409: _CONFLICT,
        },
        **public(),
    )  # fmt: skip
    async def sign_up(
        self, data: SignUpIn, state: State, idempotency_key: IdempotencyKey = None
    ) -> Response[bytes]:
        """A tenant and its owner, once the address is verified: mails the link."""
        reply = await accounts.register(
            state.iam,
            accounts.Registration(
                data.email, data.password, data.tenant_name, data.slug, check_key(idempotency_key)
            ),
            _sent,
        )
        return respond(reply)

    @post(
        "/register",
        operation_id="register",
        status_code=202,
        responses={
            202: ResponseSpec(VerificationSent, description="Check your email (whether or not"
                              " the address has an account)", generate_examples=False),
        },
        **public(),
    )  # fmt: skip
    async def register(
        self, data: UserCreate, state: State, idempotency_key: IdempotencyKey = None
    ) -> Response[bytes]:
        """An account without a tenant (to accept invitations), once the address is
        verified: mails the link."""
        reply = await accounts.register(
            state.iam,
            accounts.Registration(
                data.email, data.password, idempotency_key=check_key(idempotency_key)
            ),
            _sent,
        )
        return respond(reply)

    @post(
        "/verify",
        operation_id="verifyEmail",
        status_code=201,
        responses={409: _CONFLICT},
        **public(),
    )
    async def verify(self, data: VerifyEmailIn, state: State) -> Response[VerifiedOut]:
        """Spend the emailed link: the account (and a sign-up's tenant) is created now."""
        done = await accounts.verify_email(state.iam, data.token)
        return Response(
            VerifiedOut(
                user=_user(done.user),
                tenant=_tenant(done.tenant) if done.tenant else None,
                project=_project(done.project) if done.project else None,
            ),
            status_code=201,
            headers=NO_STORE,
        )

    @post(
        "/invitations/accept",
        operation_id="acceptInvitation",
        status_code=201,
        responses={409: _CONFLICT},
        **public(),
    )
    async def accept_invitation(
        self, request: Request[Any, Any, Any], data: AcceptInvitationIn, state: State
    ) -> MembershipOut:
        """Bind the invitation's role to the invited address's account (proven by the token
        and the account's password; an address without an account gets one with it)."""
        ctx: IamContext = state.iam
        m = await accounts.accept_invitation(
            ctx,
            accounts.AcceptInvitation(data.token, data.password, _client_address(request, ctx)),
        )
        return _membership(m, None)

    @post("/users", operation_id="createUser", status_code=201, **guarded(Action.OPERATE))
    async def create_user(self, data: UserCreate, db: Database, principal: Principal) -> UserOut:
        """An account for an address the operator vouches for (people register)."""
        return _user(await identity.create_user(db, data.email, data.password))

    @get("/me", operation_id="whoAmI", **guarded(Action.AUTHENTICATED))
    async def me(self, principal: Principal) -> MeOut:
        return MeOut(
            subject=principal.subject,
            kind=principal.kind,
            tenant_id=principal.tenant_id,
            roles=sorted(principal.roles),
            project_roles={str(p): sorted(r) for p, r in principal.project_roles.items()},
            amr=list(principal.amr),
        )

    @get("/me/mfa", operation_id="getMfaStatus", **guarded(Action.AUTHENTICATED))
    async def mfa_status(self, state: State, principal: Principal) -> MfaStatusOut:
        found = await mfa.status(state.iam, principal)
        return MfaStatusOut(totp=found.totp, recovery_codes_left=found.recovery_codes_left)  # type: ignore[arg-type]

    @post("/me/mfa/totp", operation_id="enrollTotp", status_code=201,
          **guarded(Action.AUTHENTICATED))  # fmt: skip
    async def enroll_totp(self, state: State, principal: Principal) -> Response[TotpEnrollmentOut]:
        """Start TOTP enrollment: the secret and its otpauth:// URI, shown this once."""
        enrollment = await mfa.enroll_totp(state.iam, principal)
        return Response(
            TotpEnrollmentOut(secret=enrollment.secret, otpauth_uri=enrollment.otpauth_uri),
            status_code=201,
            headers=NO_STORE,
        )

    @post("/me/mfa/totp/verify", operation_id="activateTotp", status_code=200,
          **guarded(Action.AUTHENTICATED))  # fmt: skip
    async def activate_totp(
        self, data: TotpVerifyIn, state: State, principal: Principal
    ) -> Response[RecoveryCodesOut]:
        """Activate the enrolled factor with a current code; returns the recovery codes,
        shown this once."""
        codes = await mfa.activate_totp(state.iam, principal, data.code)
        return Response(RecoveryCodesOut(recovery_codes=codes), headers=NO_STORE)


@dataclasses.dataclass
class TokenRequest:
    grant_type: str
    username: str | None = None
    password: str | None = None
    tenant: str | None = None
    refresh_token: str | None = None
    client_id: str | None = None
    client_secret: str | None = None
    scope: str | None = None
    # The second factor of a password grant: a TOTP code or a recovery code.
    otp: str | None = None

    def __repr__(self) -> str:  # never render the secrets
        return f"TokenRequest(grant_type={self.grant_type!r})"


def _client_address(request: Request[Any, Any, Any], ctx: IamContext) -> str:
    peer = request.client.host if request.client else ""
    forwarded = request.headers.get("x-forwarded-for", "")
    return client_address(peer, forwarded, ctx.trusted_proxies, ctx.proxy_hops)


class TokenController(Controller):
    path = "/v1/iam"
    tags = ["tokens"]

    @post(
        "/token",
        operation_id="issueToken",
        status_code=200,
        responses={
            400: ResponseSpec(Problem, description="invalid_grant or mfa_required",
                              media_type=PROBLEM_JSON,
                              generate_examples=False),
            401: ResponseSpec(Problem, description="invalid_client", media_type=PROBLEM_JSON,
                              generate_examples=False),
            429: ResponseSpec(Problem, description="Too many failed sign-ins",
                              media_type=PROBLEM_JSON, generate_examples=False),
        },
        **public(),
    )  # fmt: skip
    async def token(
        self,
        request: Request[Any, Any, Any],
        data: Annotated[TokenRequest, Body(media_type=RequestEncodingType.URL_ENCODED)],
        state: State,
    ) -> Response[TokenOut]:
        """OAuth 2.0 token endpoint (form-encoded): `password` (with `otp` once the account
        has a second factor), `refresh_token` and `client_credentials` grants."""
        ctx: IamContext = state.iam
        if data.grant_type == "password":
            if not data.username or not data.password:
                raise BadRequest("username and password are required")
            issued = await sessions.password_grant(
                ctx, data.username, data.password, data.tenant, _client_address(request, ctx),
                otp=data.otp,
            )  # fmt: skip
        elif data.grant_type == "refresh_token":
            if not data.refresh_token:
                raise BadRequest("refresh_token is required")
            issued = await sessions.refresh_grant(ctx, data.refresh_token)
        elif data.grant_type == "client_credentials":
            if not data.client_secret:
                raise sessions.InvalidClient("client_secret (the API key) is required")
            issued = await sessions.client_credentials_grant(
                ctx, data.client_id, data.client_secret
            )
        else:
            raise BadRequest(f"unsupported grant_type {data.grant_type!r}")
        return Response(
            TokenOut(
                access_token=issued.access_token,
                token_type="Bearer",
                expires_in=issued.expires_in,
                refresh_token=issued.refresh_token,
            ),
            headers=NO_STORE,
        )

    @get("/.well-known/jwks.json", operation_id="jwks", **public())
    async def jwks(self, state: State) -> Response[dict[str, Any]]:
        return Response(
            await state.iam.keys.jwks(), headers={"Cache-Control": "public, max-age=60"}
        )

    @get("/.well-known/openid-configuration", operation_id="openidConfiguration", **public())
    async def discovery(self, state: State) -> dict[str, Any]:
        issuer: str = state.iam.issuer
        return {
            "issuer": issuer,
            "token_endpoint": f"{issuer}/token",
            "jwks_uri": f"{issuer}/.well-known/jwks.json",
            "grant_types_supported": ["password", "refresh_token", "client_credentials"],
            "token_endpoint_auth_methods_supported": ["client_secret_post"],
            "response_types_supported": ["token"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["EdDSA"],
            "token_endpoint_auth_signing_alg_values_supported": ["EdDSA"],
            "claims_supported": [
                "iss", "aud", "sub", "exp", "iat", "nbf", "jti", "kind", "tenant", "roles",
                "proj", "amr", "auth_time", "api_key", "restricted",
            ],
        }  # fmt: skip

    @get("/signing-keys", operation_id="listSigningKeys", **guarded(Action.OPERATE))
    async def signing_keys(self, state: State, principal: Principal) -> list[SigningKeyOut]:
        rows = await state.iam.keys.published()
        return [
            SigningKeyOut(
                kid=r["kid"], status=r["status"], created_at=r["created_at"],
                retired_at=r["retired_at"], publish_until=r["publish_until"],
            )
            for r in rows
        ]  # fmt: skip

    @post(
        "/signing-keys/rotate",
        operation_id="rotateSigningKey",
        status_code=200,
        **guarded(Action.OPERATE),
    )
    async def rotate(self, state: State, principal: Principal) -> dict[str, str | None]:
        kid, retired = await state.iam.keys.rotate()
        verifier = getattr(state, "token_verifier", None)
        if verifier is not None:
            verifier.keys.invalidate()
        return {"active": kid, "retired": retired}


class ProjectController(Controller):
    path = "/v1/iam/tenants/{tenant_id:uuid}"
    tags = ["projects"]

    @get("/projects", operation_id="listProjects", **guarded(Action.PROJECT_LIST))
    async def index(
        self, tenant_id: uuid.UUID, db: Database, principal: Principal
    ) -> list[ProjectOut]:
        return [_project(p) for p in await identity.list_projects(db, tenant_id)]

    @post("/projects", operation_id="createProject", status_code=201,
          **guarded(Action.PROJECT_CREATE))  # fmt: skip
    async def create(
        self, tenant_id: uuid.UUID, data: ProjectCreate, db: Database, principal: Principal
    ) -> ProjectOut:
        return _project(
            await identity.create_project(db, tenant_id, data.name, data.slug, principal)
        )

    @get("/projects/{project_id:uuid}", operation_id="getProject", **guarded(Action.PROJECT_READ))
    async def retrieve(
        self, tenant_id: uuid.UUID, project_id: uuid.UUID, db: Database, principal: Principal
    ) -> ProjectOut:
        return _project(await identity.get_project(db, tenant_id, project_id))


class MemberController(Controller):
    path = "/v1/iam/tenants/{tenant_id:uuid}"
    tags = ["members"]

    @get("/members", operation_id="listTenantMembers", **guarded(Action.MEMBER_READ))
    async def index(
        self, tenant_id: uuid.UUID, db: Database, principal: Principal
    ) -> list[MembershipOut]:
        return [_membership(m, e) for m, e in await identity.list_members(db, tenant_id)]

    @post("/members", operation_id="grantTenantRole", status_code=202,
          **guarded(Action.MEMBER_MANAGE, step_up=True))  # fmt: skip
    async def grant(
        self, tenant_id: uuid.UUID, data: MemberGrant, state: State, principal: Principal
    ) -> Response[InvitationOut]:
        """Invite an address to a role: it binds when the address's owner accepts."""
        i = await accounts.invite(state.iam, tenant_id, data.email, data.role, principal)
        return Response(_invitation(i), status_code=202)

    @get("/invitations", operation_id="listInvitations", **guarded(Action.MEMBER_READ))
    async def invitations(
        self, tenant_id: uuid.UUID, db: Database, principal: Principal
    ) -> list[InvitationOut]:
        """The tenant's invitations (its projects' too), newest first."""
        return [_invitation(i) for i in await accounts.list_invitations(db, tenant_id)]

    @delete("/invitations/{invitation_id:uuid}", operation_id="revokeInvitation",
            **guarded(Action.MEMBER_MANAGE))  # fmt: skip
    async def revoke_invitation(
        self, tenant_id: uuid.UUID, invitation_id: uuid.UUID, db: Database, principal: Principal
    ) -> None:
        await accounts.revoke_invitation(db, tenant_id, invitation_id, principal)

    @delete("/members/{membership_id:uuid}", operation_id="revokeTenantRole",
            **guarded(Action.MEMBER_MANAGE, step_up=True))  # fmt: skip
    async def revoke(
        self, tenant_id: uuid.UUID, membership_id: uuid.UUID, db: Database, principal: Principal
    ) -> None:
        await identity.revoke_membership(db, tenant_id, membership_id, principal)

    @get("/projects/{project_id:uuid}/members", operation_id="listProjectMembers",
         **guarded(Action.PROJECT_MEMBER_READ))  # fmt: skip
    async def project_index(
        self, tenant_id: uuid.UUID, project_id: uuid.UUID, db: Database, principal: Principal
    ) -> list[MembershipOut]:
        members = await identity.list_members(db, tenant_id, project_id)
        return [_membership(m, e) for m, e in members]

    @post("/projects/{project_id:uuid}/members", operation_id="grantProjectRole",
          status_code=202, **guarded(Action.PROJECT_MEMBER_MANAGE, step_up=True))  # fmt: skip
    async def project_grant(
        self, tenant_id: uuid.UUID, project_id: uuid.UUID, data: MemberGrant, state: State,
        principal: Principal,
    ) -> Response[InvitationOut]:  # fmt: skip
        """Invite an address to a project role: it binds when the address's owner accepts."""
        i = await accounts.invite(
            state.iam, tenant_id, data.email, data.role, principal, project_id=project_id
        )
        return Response(_invitation(i), status_code=202)

    @delete("/projects/{project_id:uuid}/members/{membership_id:uuid}",
            operation_id="revokeProjectRole",
            **guarded(Action.PROJECT_MEMBER_MANAGE, step_up=True))  # fmt: skip
    async def project_revoke(
        self, tenant_id: uuid.UUID, project_id: uuid.UUID, membership_id: uuid.UUID,
        db: Database, principal: Principal,
    ) -> None:  # fmt: skip
        await identity.revoke_membership(db, tenant_id, membership_id, principal, project_id)


class PolicyController(Controller):
    path = "/v1/iam/tenants/{tenant_id:uuid}/mfa-policy"
    tags = ["mfa"]

    @get("/", operation_id="getMfaPolicy", **guarded(Action.MEMBER_READ))
    async def retrieve(self, tenant_id: uuid.UUID, db: Database, principal: Principal) -> MfaPolicy:
        return MfaPolicy(require_mfa_for_admins=await mfa.requires_mfa_for_admins(db, tenant_id))

    @put("/", operation_id="setMfaPolicy", **guarded(Action.POLICY_MANAGE, step_up=True))
    async def update(
        self, tenant_id: uuid.UUID, data: MfaPolicy, db: Database, principal: Principal
    ) -> MfaPolicy:
        """Require a second factor of the tenant's owners and admins: without one they get
        a token good only for enrolling one."""
        required = await mfa.set_policy(db, tenant_id, data.require_mfa_for_admins, principal)
        return MfaPolicy(require_mfa_for_admins=required)


class ServiceAccountController(Controller):
    path = "/v1/iam/tenants/{tenant_id:uuid}/projects/{project_id:uuid}/service-accounts"
    tags = ["service-accounts"]

    @get("/", operation_id="listServiceAccounts", **guarded(Action.SERVICE_ACCOUNT_READ))
    async def index(
        self, tenant_id: uuid.UUID, project_id: uuid.UUID, db: Database, principal: Principal
    ) -> list[ServiceAccountOut]:
        return [_sa(s) for s in await identity.list_service_accounts(db, tenant_id, project_id)]

    @post("/", operation_id="createServiceAccount", status_code=201,
          **guarded(Action.SERVICE_ACCOUNT_MANAGE, step_up=True))  # fmt: skip
    async def create(
        self, tenant_id: uuid.UUID, project_id: uuid.UUID, data: ServiceAccountCreate,
        db: Database, principal: Principal,
    ) -> ServiceAccountOut:  # fmt: skip
        sa = await identity.create_service_account(
            db, tenant_id, project_id, data.name, data.role, principal
        )
        return _sa(sa)

    @get("/{service_account_id:uuid}/keys", operation_id="listApiKeys",
         **guarded(Action.SERVICE_ACCOUNT_MANAGE))  # fmt: skip
    async def keys(
        self, tenant_id: uuid.UUID, project_id: uuid.UUID, service_account_id: uuid.UUID,
        db: Database, principal: Principal,
    ) -> list[ApiKeyOut]:  # fmt: skip
        found = await identity.list_api_keys(db, tenant_id, project_id, service_account_id)
        return [_key(k) for k in found]

    @post("/{service_account_id:uuid}/keys", operation_id="issueApiKey", status_code=201,
          **guarded(Action.SERVICE_ACCOUNT_MANAGE, step_up=True))  # fmt: skip
    async def issue(
        self, tenant_id: uuid.UUID, project_id: uuid.UUID, service_account_id: uuid.UUID,
        data: ApiKeyCreate, db: Database, principal: Principal,
    ) -> Response[ApiKeyIssuedOut]:  # fmt: skip
        key, plaintext = await identity.issue_api_key(
            db, tenant_id, project_id, service_account_id, principal,
            lifetime=dt.timedelta(days=data.expires_in_days), replaces=data.replaces,
            overlap=dt.timedelta(hours=data.overlap_hours),
        )  # fmt: skip
        return Response(
            ApiKeyIssuedOut(key=_key(key), api_key=plaintext), status_code=201, headers=NO_STORE
        )

    @delete("/{service_account_id:uuid}/keys/{key_id:uuid}", operation_id="revokeApiKey",
            **guarded(Action.SERVICE_ACCOUNT_MANAGE))  # fmt: skip
    async def revoke(
        self, tenant_id: uuid.UUID, project_id: uuid.UUID, service_account_id: uuid.UUID,
        key_id: uuid.UUID, db: Database, principal: Principal,
    ) -> None:  # fmt: skip
        await identity.revoke_api_key(
            db, tenant_id, project_id, service_account_id, key_id, principal
        )


ROUTES = [
    TenantController,
    AccountController,
    TokenController,
    ProjectController,
    MemberController,
    PolicyController,
    ServiceAccountController,
    SshKeyController,
]
