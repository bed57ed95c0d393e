"""The whole fleet as separate processes on real Kafka and PostgreSQL, reached through the
gateway the way the portal reaches it. `devstack up` is idempotent: an already running
fleet is reused, a missing one is started."""

import dataclasses
from collections.abc import Iterator

import httpx
import pytest


@dataclasses.dataclass(frozen=True)
class Fleet:
    gateway: str
    operator_token: str
    kafka_bootstrap: str
    pg_admin_url: str

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.gateway, timeout=15.0)

    @property
    def operator(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.operator_token}"}


@pytest.fixture(scope="session")
def fleet() -> Iterator[Fleet]:
    from devstack import credentials, stack
    from devstack.fleet import load
    from devstack.processes import url

    infra, _ = stack.up(log=lambda _msg: None)
    yield Fleet(
        gateway=url(load().gateway),
        operator_token=credentials.password(credentials.OPERATOR_TOKEN),
        kafka_bootstrap=infra.kafka_bootstrap,
        pg_admin_url=infra.pg_admin_url,
    )


@pytest.fixture
def gateway(fleet: Fleet) -> Iterator[httpx.Client]:
    with fleet.client() as client:
        yield client
