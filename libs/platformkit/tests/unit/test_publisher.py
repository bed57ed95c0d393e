"""A service's EventPublisher: the topic comes from the contract catalog, the payload must be
the type's Struct, the source is the service."""

import datetime as dt
import uuid

import pytest

from gpucloud_contracts.catalog import EVENT_TYPES
from gpucloud_contracts.events.iam import TenantCreated, TenantSuspended
from platformkit.outbox import EventPublisher

NOW = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
TENANT = uuid.uuid4()
CREATED = TenantCreated(tenant_id=TENANT, name="Acme", slug="acme", status="active", created_at=NOW)


def test_the_event_carries_the_service_as_source_and_the_catalog_knows_its_topic():
    event = EventPublisher("iam").event(
        "iam.tenant.created", subject=str(TENANT), tenant=str(TENANT), payload=CREATED
    )
    assert event.source == "iam" and event.type == "iam.tenant.created"
    assert EVENT_TYPES[event.type].topic == "iam.tenant.v1"
    assert event.decode(TenantCreated) == CREATED


def test_an_unknown_type_or_a_payload_of_another_shape_is_refused():
    events = EventPublisher("iam")
    with pytest.raises(KeyError, match="not in contracts/asyncapi"):
        events.event("iam.tenant.renamed", subject="t", payload=CREATED)
    suspended = TenantSuspended(tenant_id=TENANT, reason="r", suspended_at=NOW)
    with pytest.raises(TypeError, match="TenantCreated"):
        events.event("iam.tenant.created", subject="t", payload=suspended)
    with pytest.raises(TypeError):
        events.event("iam.tenant.created", subject="t", payload={"tenant_id": str(TENANT)})
