"""devstack's broker authenticates every client (SASL/SCRAM-SHA-512) and authorizes each
service's principal by the ACL table generated from deploy/fleet.toml and the contracts: the
refusals of issue 19 on the real broker, each beside the grant it must not take away."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import AsyncIterator

import pytest
from aiokafka.admin import NewTopic
from aiokafka.errors import (
    GroupAuthorizationFailedError,
    KafkaConnectionError,
    TopicAuthorizationFailedError,
)

from devstack.infra import Infra, ensure_infra
from gpucloud_contracts.acls import Acl, Operation, PatternType, ResourceType, fleet_acls
from platformkit import kafka
from platformkit.kafka import KafkaSettings
from platformkit.provision import create_acls, describe_acls, entry, provision

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def infra() -> Infra:
    return ensure_infra()


def as_principal(infra: Infra, principal: str) -> KafkaSettings:
    return KafkaSettings.from_env(infra.kafka_env(principal))


@pytest.fixture(scope="module")
async def admin(infra: Infra) -> AsyncIterator:
    settings = as_principal(infra, "admin")
    await provision(settings, report=lambda _: None)  # topics and ACLs, as `up` makes them
    client = kafka.admin_client(settings, "acl-tests")
    await client.start()
    yield client
    await client.close()


@pytest.fixture
async def billing_scratch_topic(admin) -> AsyncIterator[str]:
    """A topic of billing's family that only the admin can create (nobody else may)."""
    name = f"billing.acl-test-{uuid.uuid4().hex[:8]}.v1"
    await admin.create_topics([NewTopic(name, 1, 1)])
    yield name
    await admin.delete_topics([name])


async def _send(settings: KafkaSettings, topic: str) -> None:
    producer = kafka.producer(settings, "acl-tests", request_timeout_ms=5000)
    await producer.start()
    try:
        await producer.send_and_wait(topic, b"{}", key=b"acl-test")
    finally:
        await producer.stop()


async def _join(settings: KafkaSettings, topic: str, group: str) -> None:
    reader = kafka.consumer(settings, topic, client_id="acl-tests", group_id=group)
    try:
        await reader.start()
        await reader.getmany(timeout_ms=200)
    finally:
        await reader.stop()


async def test_billing_writes_its_own_family_but_not_gpuaas_allocations(
    infra, admin, billing_scratch_topic
) -> None:
    billing = as_principal(infra, "billing")
    await _send(billing, billing_scratch_topic)
    with pytest.raises(TopicAuthorizationFailedError):
        await _send(billing, "gpuaas.allocation.v1")


async def test_billing_reads_what_it_consumes_only(infra, admin) -> None:
    billing = as_principal(infra, "billing")
    group = f"billing.acl-test-{uuid.uuid4().hex[:8]}"
    await _join(billing, "metering.usage.v1", group)  # its rating consumer's topic
    with pytest.raises(TopicAuthorizationFailedError):
        await _join(billing, "gpuaas.allocation.v1", group)


async def test_billing_cannot_join_another_services_group(infra, admin) -> None:
    billing = as_principal(infra, "billing")
    with pytest.raises(GroupAuthorizationFailedError):
        await _join(billing, "metering.usage.v1", "gpuaas.balance-standing")


async def test_no_client_connects_without_valid_credentials(infra, admin) -> None:
    billing = as_principal(infra, "billing")
    # the only client listener speaks SASL: a PLAINTEXT client is never served
    with pytest.raises(KafkaConnectionError):
        await _send(KafkaSettings(billing.bootstrap), "billing.balance.v1")
    with pytest.raises(KafkaConnectionError):
        await _send(dataclasses.replace(billing, password="not-the-password"), "billing.balance.v1")


async def test_the_cluster_holds_exactly_the_generated_table(infra, admin) -> None:
    """A grant outside the table (here: billing reading gpuaas's allocations) is removed by
    the next provisioning; the table itself is all there."""
    stray = entry(
        Acl(
            "User:billing",
            Operation.READ,
            ResourceType.TOPIC,
            PatternType.LITERAL,
            "gpuaas.allocation.v1",
        )
    )
    await create_acls(admin, [stray])
    assert stray in await describe_acls(admin)

    await provision(as_principal(infra, "admin"), report=lambda _: None)
    held = await describe_acls(admin)
    assert stray not in held
    table = {entry(acl) for acl in fleet_acls()}
    principals = {acl.principal for acl in fleet_acls()}
    assert {e for e in held if e[3] in principals} == table
