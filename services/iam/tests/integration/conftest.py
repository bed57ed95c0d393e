"""iam on a fresh database (real PostgreSQL), served in process. Kafka stays off here:
events are asserted as outbox rows, which the kit's own tests prove reach Kafka. Its mail
goes over SMTP to a real local sink (devstack's aiosmtpd one, in a thread); the helpers
complete sign-up and invitations by reading the messages, as a person would."""

import contextlib
import dataclasses
import time
import uuid
from collections.abc import AsyncIterator

import pyotp
import pytest
from litestar.testing import AsyncTestClient

from devstack import mail
from iam.app.mail import Mailer
from iam.bootstrap import DEFINITION
from platformkit.http import build_service_app
from platformkit.service import migrate
from platformkit.settings import ServiceSettings

OPERATOR_TOKEN = "operator-" + uuid.uuid4().hex
PASSWORD = "correct horse battery staple"


MAIL: dict[str, object] = {}


@pytest.fixture(scope="session", autouse=True)
def mail_sink(tmp_path_factory):
    """A real SMTP server for iam's messages: the folder they land in."""
    into = tmp_path_factory.mktemp("mail")
    with mail.sink(into) as port:
        MAIL.update(dir=into, port=port)
        yield into


def wire_mail(app) -> None:
    """Point the in-process iam's mailer at the sink (devstack does it by environment)."""
    app.state.iam.mailer = Mailer("127.0.0.1", int(MAIL["port"]))  # type: ignore[arg-type]


def mailed_token(to: str, prefix: str, after: int = 0) -> str:
    return mail.wait_for_token(to, prefix, where=MAIL["dir"], after=after)  # type: ignore[arg-type]


def mailed(to: str) -> list[mail.Message]:
    return mail.messages(MAIL["dir"], to)  # type: ignore[arg-type]


def mailed_count(to: str, prefix: str) -> int:
    return len([m for m in mailed(to) if m.token and m.token.startswith(prefix)])


@pytest.fixture(scope="module")
def iam_database(infra):
    with infra.scratch_database("test_iam") as url:
        yield url


@pytest.fixture(scope="module")
async def client(iam_database, mail_sink) -> AsyncIterator[AsyncTestClient]:
    settings = ServiceSettings(
        service_name="iam", database_url=iam_database, operator_token=OPERATOR_TOKEN
    )
    definition = dataclasses.replace(DEFINITION, kafka=False)
    migrate(definition, settings)
    app = build_service_app(definition, settings)
    async with AsyncTestClient(app) as test_client:
        wire_mail(app)
        yield test_client


def slug() -> str:
    return f"t-{uuid.uuid4().hex[:12]}"


def email() -> str:
    return f"u-{uuid.uuid4().hex[:12]}@example.test"


async def verify(client, address: str, after: int = 0) -> dict:
    """Open the verification link mailed to `address`: what it created."""
    token_ = mailed_token(address, "gcv_", after)
    response = await client.post("/v1/iam/verify", json={"token": token_})
    assert response.status_code == 201, response.text
    return response.json()


async def sign_up(client) -> dict:
    """A tenant through sign-up, verified by the mailed link: tenant, user, project, email."""
    body = {"tenant_name": "Acme", "slug": slug(), "email": email(), "password": PASSWORD}
    response = await client.post("/v1/iam/signup", json=body)
    assert response.status_code == 202, response.text
    return {**await verify(client, body["email"]), "email": body["email"]}


async def invite(
    client, inviter_token: str, path: str, address: str, role: str, password: str = PASSWORD
) -> dict:
    """Invite `address` to `role` at `path` (a tenant's or project's base) and accept the
    mailed invitation as them: the membership."""
    seen = mailed_count(address, "gci_")
    invited = await client.post(
        f"{path}/members", json={"email": address, "role": role}, headers=bearer(inviter_token)
    )
    assert invited.status_code == 202, invited.text
    accepted = await client.post(
        "/v1/iam/invitations/accept",
        json={"token": mailed_token(address, "gci_", seen), "password": password},
    )
    assert accepted.status_code == 201, accepted.text
    return accepted.json()


async def token(
    client, username: str, password: str = PASSWORD, tenant: str | None = None,
    otp: str | None = None,
):  # fmt: skip
    form = {"grant_type": "password", "username": username, "password": password}
    if tenant:
        form["tenant"] = tenant
    if otp:
        form["otp"] = otp
    return await client.post("/v1/iam/token", data=form)


# The second factors the helpers enrolled: email -> secret, last step used, recovery codes.
FACTORS: dict[str, dict] = {}


def totp_step() -> int:
    return int(time.time()) // 30


async def enroll_mfa(client, username: str, tenant: str | None = None) -> dict:
    """Enroll and activate TOTP for a user (with a password-only token)."""
    response = await token(client, username, tenant=tenant)
    assert response.status_code == 200, response.text
    password_only = bearer(response.json()["access_token"])
    enrolled = await client.post("/v1/iam/me/mfa/totp", headers=password_only)
    assert enrolled.status_code == 201, enrolled.text
    secret, step = enrolled.json()["secret"], totp_step()
    verified = await client.post(
        "/v1/iam/me/mfa/totp/verify",
        json={"code": pyotp.TOTP(secret).generate_otp(step)},
        headers=password_only,
    )
    assert verified.status_code == 200, verified.text
    FACTORS[username] = {
        "secret": secret, "last": step, "codes": verified.json()["recovery_codes"],
    }  # fmt: skip
    return FACTORS[username]


def next_otp(username: str) -> str:
    """A TOTP code for a step not used yet (iam refuses replays), or, when the next step
    is still in the future, a recovery code: no test waits for the clock."""
    factor = FACTORS[username]
    step = max(factor["last"] + 1, totp_step())
    if step > totp_step() + 1:
        return factor["codes"].pop()
    factor["last"] = step
    return pyotp.TOTP(factor["secret"]).generate_otp(step)


async def access(client, username: str, tenant: str | None = None, mfa: bool = False) -> str:
    """An access token; with `mfa` (or once the user has a factor), signed in with it."""
    if mfa and username not in FACTORS:
        await enroll_mfa(client, username, tenant)
    otp = next_otp(username) if username in FACTORS else None
    response = await token(client, username, tenant=tenant, otp=otp)
    assert response.status_code == 200, response.text
    return response.json()["access_token"]


def bearer(value: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {value}"}


async def add_member(client, owner_token: str, tenant_id: str, role: str, project_id=None) -> str:
    """A new user holding `role` in the tenant (or project); returns their email.
    `owner_token` must carry a recent second factor (granting is a step-up operation)."""
    address = email()
    path = f"/v1/iam/tenants/{tenant_id}" + (f"/projects/{project_id}" if project_id else "")
    await invite(client, owner_token, path, address, role)
    return address


@contextlib.asynccontextmanager
async def iam_with_token_consumers(
    infra, iam_database: str, names: tuple[str, ...], route_handlers: list
) -> AsyncIterator[dict]:
    """iam in process (its relay publishing to the real broker) and other services built
    with platformkit's `build_service_app` exactly as the fleet builds them (JWKS URL set, so
    their runtime starts the revocation and membership projections). Their JWKS source is
    pointed at the in-process iam, which has no HTTP port; the rest is production wiring."""
    from platformkit.definition import ServiceDefinition
    from platformkit.provision import provision

    from .test_sign_in import JwksFrom

    await provision(infra.kafka, acls=False, report=lambda _: None)
    iam_settings = ServiceSettings(
        service_name="iam", database_url=iam_database, operator_token=OPERATOR_TOKEN,
        kafka=infra.kafka, outbox_poll_interval_s=0.5,
        heartbeat_interval_s=0,
    )  # fmt: skip
    migrate(DEFINITION, iam_settings)
    async with contextlib.AsyncExitStack() as stack:
        iam = await stack.enter_async_context(
            AsyncTestClient(build_service_app(DEFINITION, iam_settings))
        )
        wire_mail(iam.app)
        services = []
        for name in names:
            settings = ServiceSettings(
                service_name=name, kafka=infra.kafka,
                jwks_url="http://127.0.0.1:9/not-used", heartbeat_interval_s=0,
            )  # fmt: skip
            definition = ServiceDefinition(
                name=name, version="0", description="a consumer of iam tokens",
                route_handlers=route_handlers, relay=False,
            )  # fmt: skip
            client = await stack.enter_async_context(
                AsyncTestClient(build_service_app(definition, settings))
            )
            client.app.state.token_verifier.keys.source = JwksFrom(iam)
            services.append(client)
        yield {"iam": iam, "services": services}
