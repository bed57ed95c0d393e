"""The generated event contracts agree with contracts/asyncapi and reject bad payloads."""

from __future__ import annotations

import datetime
import importlib
import uuid
from pathlib import Path

import msgspec
import pytest
import yaml

from gpucloud_contracts import catalog
from gpucloud_contracts.events.audit import CheckpointCreated
from gpucloud_contracts.events.iam import TenantCreated, TenantSuspended
from gpucloud_contracts.events.platform import ServiceHeartbeat
from platformkit.provision import declared_topics

ASYNCAPI_DIR = Path(__file__).resolve().parents[3] / "contracts" / "asyncapi"
NOW = datetime.datetime(2025, 1, 2, 3, 4, 5, 678000, tzinfo=datetime.UTC)
TENANT_ID = uuid.UUID("01941f29-7c00-7000-8000-000000000001")

EXAMPLES: list[msgspec.Struct] = [
    TenantCreated(tenant_id=TENANT_ID, name="Acme", slug="acme", status="active", created_at=NOW),
    TenantSuspended(tenant_id=TENANT_ID, reason="unpaid invoices", suspended_at=NOW),
    TenantSuspended(
        tenant_id=TENANT_ID, reason="abuse", suspended_at=NOW, suspended_by=uuid.uuid4()
    ),
    ServiceHeartbeat(
        service="iam",
        instance="iam-0",
        version="0.1.0",
        git_sha="82abdd5",
        ready=True,
        checks={"database": True, "kafka": False},
        started_at=NOW,
        sent_at=NOW,
    ),
    CheckpointCreated(checkpoint_id=uuid.uuid4(), sequence=42, head_hash="ab" * 32, created_at=NOW),
]


def documents() -> dict[str, dict]:
    return {
        path.stem: yaml.safe_load(path.read_text(encoding="utf-8"))
        for path in sorted(ASYNCAPI_DIR.glob("*.yaml"))
    }


def valid_tenant_created() -> dict:
    return {
        "tenant_id": str(TENANT_ID),
        "name": "Acme",
        "slug": "acme",
        "status": "active",
        "created_at": "2025-01-02T03:04:05Z",
    }


@pytest.mark.parametrize("event", EXAMPLES, ids=lambda e: type(e).__name__)
def test_structs_round_trip_through_json(event: msgspec.Struct) -> None:
    encoded = msgspec.json.encode(event)
    assert msgspec.json.decode(encoded, type=type(event)) == event


def test_a_valid_payload_decodes() -> None:
    payload = msgspec.json.encode(valid_tenant_created())
    event = msgspec.json.decode(payload, type=catalog.payload_type("iam.tenant.created"))
    assert event == TenantCreated(
        tenant_id=TENANT_ID,
        name="Acme",
        slug="acme",
        status="active",
        created_at=datetime.datetime(2025, 1, 2, 3, 4, 5, tzinfo=datetime.UTC),
    )


@pytest.mark.parametrize(
    ("change", "complaint"),
    [
        ({"slug": "Not A Slug"}, "$.slug"),
        ({"slug": "-leading-dash"}, "$.slug"),
        ({"name": ""}, "$.name"),
        ({"status": "deleted"}, "$.status"),
        ({"tenant_id": "not-a-uuid"}, "$.tenant_id"),
        ({"created_at": "2025-01-02T03:04:05"}, "$.created_at"),  # no offset
        ({"plan": "gold"}, "unknown field `plan`"),
    ],
)
def test_a_payload_that_breaks_the_schema_is_rejected(change: dict, complaint: str) -> None:
    payload = msgspec.json.encode(valid_tenant_created() | change)
    with pytest.raises(msgspec.ValidationError, match=complaint.replace("$", r"\$")):
        msgspec.json.decode(payload, type=TenantCreated)


def test_a_missing_required_field_is_rejected() -> None:
    payload = valid_tenant_created()
    del payload["slug"]
    with pytest.raises(msgspec.ValidationError, match="missing required field `slug`"):
        msgspec.json.decode(msgspec.json.encode(payload), type=TenantCreated)


def test_the_catalog_lists_every_message_of_every_document() -> None:
    declared: dict[str, str] = {}  # ce_type -> schema name
    for family, document in documents().items():
        for message in ((document.get("components") or {}).get("messages") or {}).values():
            declared[message["name"]] = message["payload"]["$ref"].rsplit("/", 1)[1]
            assert message["name"].startswith(f"{family}."), message["name"]
    assert sorted(catalog.EVENT_TYPES) == sorted(declared)
    for ce_type, schema_name in declared.items():
        spec = catalog.EVENT_TYPES[ce_type]
        assert spec.type == ce_type
        assert spec.payload.__name__ == schema_name
        assert catalog.payload_type(ce_type) is spec.payload
        assert catalog.topic_for(ce_type) == spec.topic
        assert spec.topic in catalog.TOPICS


def test_topics_match_the_channel_bindings() -> None:
    bindings = {}
    for document in documents().values():
        for channel in (document.get("channels") or {}).values():
            if "$ref" not in channel:
                bindings[channel["address"]] = channel["bindings"]["kafka"]
    assert sorted(catalog.TOPICS) == sorted(bindings)
    for name, kafka in bindings.items():
        spec = catalog.TOPICS[name]
        assert (spec.partitions, spec.replicas) == (kafka["partitions"], kafka.get("replicas", 1))
        assert spec.dlq == f"{name}.dlq"


def test_struct_fields_match_the_schemas() -> None:
    """msgspec's own JSON Schema of each Struct has the contract's fields and required list."""
    for family, document in documents().items():
        if not document.get("channels"):
            continue
        module = importlib.import_module(f"gpucloud_contracts.events.{family}")
        for name, schema in document["components"]["schemas"].items():
            generated = msgspec.json.schema(getattr(module, name))["$defs"][name]
            assert list(generated["properties"]) == sorted(
                schema["properties"], key=lambda p: p not in schema["required"]
            )
            assert sorted(generated.get("required", [])) == sorted(schema["required"])
            assert generated["additionalProperties"] is False


def test_unknown_event_types_are_named_in_the_error() -> None:
    with pytest.raises(KeyError, match=r"iam\.tenant\.exploded"):
        catalog.payload_type("iam.tenant.exploded")


def test_provision_declares_every_topic_and_its_dlq() -> None:
    topics = declared_topics(replicas_override=3)
    assert set(topics) == {n for t in catalog.TOPICS.values() for n in (t.name, t.dlq)}
    assert topics["iam.tenant.v1.dlq"] == (catalog.TOPICS["iam.tenant.v1"].partitions, 3)
