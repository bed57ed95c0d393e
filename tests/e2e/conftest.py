"""The whole fleet as separate processes on real Kafka and PostgreSQL, reached through the
gateway the way the portal reaches it. `devstack up` is idempotent: an already running
fleet is reused, a missing one is started."""

import dataclasses
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pyotp
import pytest

from platformkit.kafka import KafkaSettings


@dataclasses.dataclass(frozen=True)
class Fleet:
    gateway: str
    operator_token: str
    kafka: KafkaSettings  # the admin principal's
    pg_admin_url: str
    mail_dir: Path  # the local SMTP sink's messages (devstack/mail.py)

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.gateway, timeout=15.0)

    @property
    def operator(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.operator_token}"}


@pytest.fixture(scope="session")
def fleet() -> Iterator[Fleet]:
    from devstack import credentials, mail, stack
    from devstack.fleet import load
    from devstack.processes import url

    infra, _ = stack.up(log=lambda _msg: None)
    yield Fleet(
        gateway=url(load().gateway),
        operator_token=credentials.password(credentials.OPERATOR_TOKEN),
        kafka=KafkaSettings.from_env(infra.kafka_env()),
        pg_admin_url=infra.pg_admin_url,
        mail_dir=mail.folder(),
    )


@pytest.fixture
def gateway(fleet: Fleet) -> Iterator[httpx.Client]:
    with fleet.client() as client:
        yield client


def until(what: str, probe: Callable[[], Any], within: float = 30.0, every: float = 0.2) -> Any:
    """Call `probe` until it returns something truthy; that value."""
    deadline = time.monotonic() + within
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {within:g} s")
        time.sleep(every)


def gpuaas_sees_balance(
    fleet: Fleet, tenant_id: str, available_micros: int | None = None
) -> Callable[[], bool]:
    """A probe: gpuaas has projected a balance standing for the tenant (billing.balance.v1)
    that is not exhausted, with `available_micros` when given. gpuaas's money gate fails
    closed (402 balance-unknown / balance-exhausted until then), so a launch right after a
    top-up waits for this; read from gpuaas's own database, as nothing else shows it."""
    import psycopg

    url = fleet.pg_admin_url.rsplit("/", 1)[0] + "/gpuaas"

    def probe() -> bool:
        with psycopg.connect(url, autocommit=True) as conn:
            row = conn.execute(
                "SELECT standing, available_micros FROM balance_standing WHERE tenant_id = %s",
                [tenant_id],
            ).fetchone()
        return (
            row is not None
            and row[0] != "exhausted"
            and (available_micros is None or row[1] == available_micros)
        )

    return probe


def idempotency_key() -> dict[str, str]:
    return {"Idempotency-Key": str(uuid.uuid4())}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


class Person:
    """A user of the fleet: email, password, and a TOTP secret once enrolled."""

    def __init__(self, prefix: str, password: str) -> None:
        self.email = f"{prefix}-{uuid.uuid4().hex[:12]}@example.test"
        self.password = password
        self.totp: pyotp.TOTP | None = None
        self.last_step = 0
        self.recovery_codes: list[str] = []

    def next_code(self) -> str:
        """A TOTP code of a step later than any used (iam refuses replays); ±1 step is
        accepted, so at most two codes per 30 s window: a third waits for the next window
        (a recovery code is another way)."""
        assert self.totp is not None, "not enrolled"
        step = max(self.last_step + 1, int(time.time()) // 30)
        while step > int(time.time()) // 30 + 1:
            time.sleep(0.5)
        self.last_step = step
        return self.totp.generate_otp(step)

    def sign_in(self, gateway: httpx.Client, tenant: str) -> str:
        form = {"grant_type": "password", "username": self.email, "password": self.password}
        form["tenant"] = tenant
        if self.totp is not None:
            form["otp"] = self.next_code()
        response = gateway.post("/v1/iam/token", data=form)
        assert response.status_code == 200, response.text
        return response.json()["access_token"]

    def enroll(self, gateway: httpx.Client, tenant: str) -> str:
        """Enroll TOTP with a password-only token; a token signed in with it."""
        self.activate_totp(gateway, tenant)
        return self.sign_in(gateway, tenant)

    def activate_totp(self, gateway: httpx.Client, tenant: str) -> None:
        """Enroll and activate TOTP with a password-only token, keeping the recovery codes;
        the next sign-in needs `next_code()` (or a recovery code)."""
        password_only = bearer(self.sign_in(gateway, tenant))
        enrolled = gateway.post("/v1/iam/me/mfa/totp", headers=password_only)
        assert enrolled.status_code in (200, 201), enrolled.text
        self.totp = pyotp.TOTP(enrolled.json()["secret"])
        self.last_step = int(time.time()) // 30
        verified = gateway.post(
            "/v1/iam/me/mfa/totp/verify",
            json={"code": self.totp.generate_otp(self.last_step)},
            headers=password_only,
        )
        assert verified.status_code in (200, 201), verified.text
        self.recovery_codes = verified.json()["recovery_codes"]


def mailed_token(to: str, prefix: str, after: int = 0) -> str:
    """The newest `gcv_` (verification) or `gci_` (invitation) token iam mailed to `to`,
    read from devstack's mail sink as a person reads their inbox."""
    from devstack import mail

    return mail.wait_for_token(to, prefix, after=after)


def mailed_count(to: str, prefix: str) -> int:
    from devstack import mail

    return len([m for m in mail.messages(to=to) if m.token and m.token.startswith(prefix)])


def verify_email(gateway: httpx.Client, address: str, after: int = 0) -> dict[str, Any]:
    """Open the verification link mailed to `address`: the account (and a sign-up's tenant
    and default project) it created."""
    verified = gateway.post("/v1/iam/verify", json={"token": mailed_token(address, "gcv_", after)})
    assert verified.status_code == 201, verified.text
    return verified.json()


def sign_up(gateway: httpx.Client, prefix: str, password: str) -> tuple[dict[str, Any], Person]:
    """A new tenant through iam's sign-up, verified by the link mailed to its owner: the
    tenant, owner and default project, and the owner."""
    owner = Person(prefix, password)
    body = {
        "tenant_name": prefix.title(),
        "slug": f"{prefix}-{uuid.uuid4().hex[:10]}",
        "email": owner.email,
        "password": password,
    }
    response = gateway.post("/v1/iam/signup", json=body, headers=idempotency_key())
    assert response.status_code == 202, response.text
    return verify_email(gateway, owner.email), owner


def invite(
    gateway: httpx.Client, path: str, person: "Person", role: str, headers: dict[str, str]
) -> dict[str, Any]:
    """Grant `role` at `path` (`/v1/iam/tenants/{t}` or `.../projects/{p}`) to `person` by
    invitation, and accept it as them with the token mailed to them (creating their account
    when they have none): the membership."""
    seen = mailed_count(person.email, "gci_")
    invited = gateway.post(
        f"{path}/members", json={"email": person.email, "role": role}, headers=headers
    )
    assert invited.status_code == 202, invited.text
    accepted = gateway.post(
        "/v1/iam/invitations/accept",
        json={"token": mailed_token(person.email, "gci_", after=seen), "password": person.password},
    )
    assert accepted.status_code == 201, accepted.text
    return accepted.json()


def create_app(
    gateway: httpx.Client, namespace: str, name: str, headers: dict[str, str]
) -> httpx.Response:
    """POST a registry app into `namespace` (/v1/registry/tenants/{t}/projects/{p}), once
    registry's projection of iam's projects knows the project (a project iam has just
    created answers 404 for a moment)."""

    def created() -> httpx.Response | None:
        response = gateway.post(
            f"{namespace}/apps", json={"name": name}, headers=headers | idempotency_key()
        )
        return None if response.status_code == 404 else response

    return until(f"registry knows the project of {namespace}", created, within=20.0)
