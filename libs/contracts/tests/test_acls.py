"""The ACL table generated from deploy/fleet.toml and the AsyncAPI receive operations."""

import tomllib
from pathlib import Path

from gpucloud_contracts.acls import Operation, PatternType, ResourceType, fleet_acls, publishers
from gpucloud_contracts.catalog import TOPICS
from gpucloud_contracts.principals import SERVICES

FLEET = tomllib.loads((Path(__file__).resolve().parents[3] / "deploy/fleet.toml").read_text())


def rows(service: str) -> set[tuple[str, str, str, str]]:
    return {
        (a.operation.name, a.resource.name, a.pattern.name, a.name)
        for a in fleet_acls()
        if a.principal == f"User:{service}"
    }


def test_one_principal_per_service_of_the_fleet():
    assert set(SERVICES) == {s["name"] for s in FLEET["service"]}
    assert {a.principal for a in fleet_acls()} == {f"User:{s}" for s in SERVICES}


def test_billings_grants_are_exactly_what_it_does():
    assert rows("billing") == {
        ("WRITE", "TOPIC", "PREFIXED", "billing."),
        ("WRITE", "TOPIC", "LITERAL", "platform.heartbeat.v1"),
        ("READ", "TOPIC", "LITERAL", "metering.usage.v1"),
        ("READ", "TOPIC", "LITERAL", "iam.tenant.v1"),
        ("READ", "TOPIC", "LITERAL", "iam.membership.v1"),
        ("READ", "TOPIC", "LITERAL", "iam.service-account.v1"),
        ("WRITE", "TOPIC", "LITERAL", "metering.usage.v1.dlq"),
        ("WRITE", "TOPIC", "LITERAL", "iam.tenant.v1.dlq"),
        ("WRITE", "TOPIC", "LITERAL", "iam.membership.v1.dlq"),
        ("WRITE", "TOPIC", "LITERAL", "iam.service-account.v1.dlq"),
        ("READ", "GROUP", "PREFIXED", "billing."),
    }


def test_no_service_may_write_a_contract_topic_of_a_family_it_does_not_own():
    for acl in fleet_acls():
        if acl.operation is not Operation.WRITE or acl.name.endswith(".dlq"):
            continue
        service = acl.principal.removeprefix("User:")
        family = acl.name.split(".", 1)[0]
        assert family in SERVICES[service].families or acl.name == "platform.heartbeat.v1", acl
    for topic in TOPICS:
        owners = publishers(topic)
        assert owners, topic
        if not topic.startswith("platform."):
            assert len(owners) == 1, (topic, owners)


def test_reads_are_contract_topics_and_groups_are_the_services_own():
    for acl in fleet_acls():
        if acl.resource is ResourceType.GROUP:
            assert acl.pattern is PatternType.PREFIXED
            assert acl.name == acl.principal.removeprefix("User:") + "."
        elif acl.operation is Operation.READ:
            assert acl.name in TOPICS and acl.pattern is PatternType.LITERAL, acl
