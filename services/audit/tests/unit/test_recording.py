import datetime as dt
import uuid

from audit.domain.recording import RULES, SourceEvent, to_record, trace_id_of, with_tenant_seq
from gpucloud_trust.records import decode_record, encode_record

T = "0190a1b2-0000-7000-8000-000000000001"
AT = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.UTC)


def _event(type_: str, payload: dict, **kw) -> SourceEvent:
    return SourceEvent(
        id=str(uuid.uuid4()), type=type_, source=type_.split(".")[0], subject="s",
        time=AT, payload=payload, **kw,
    )  # fmt: skip


def test_the_request_s_caller_is_the_actor_with_its_address():
    record = to_record(
        _event(
            "iam.membership.granted",
            {"membership_id": "m1", "tenant_id": T, "granted_by": "u-payload", "project_id": "p1"},
            tenant=T, actor="u-1", actor_kind="user", client_address="203.0.113.9",
            trace_id="ab" * 16,
        )
    )  # fmt: skip
    assert record is not None
    assert (record.actor.subject, record.actor.kind, record.actor.tenant) == ("u-1", "user", T)
    assert (record.action, record.target.kind, record.target.id) == (
        "iam.membership.granted", "membership", "m1",
    )  # fmt: skip
    assert (record.target.tenant, record.target.project) == (T, "p1")
    assert (record.client_address, record.service, record.outcome) == (
        "203.0.113.9", "iam", "success",
    )  # fmt: skip
    assert record.trace_id == "ab" * 16
    assert record.time == AT


def test_without_a_caller_the_payload_names_the_actor_else_the_service_acted():
    granted = to_record(_event("iam.membership.granted", {"membership_id": "m", "granted_by": "u"}))
    assert (granted.actor.subject, granted.actor.kind) == ("u", "user")
    placed = to_record(_event("gpuaas.allocation.scheduled", {"allocation_id": "a"}))
    assert (placed.actor.subject, placed.actor.kind) == ("gpuaas", "service")


def test_outcomes_follow_the_event_type_or_the_payload():
    assert to_record(_event("billing.payment.failed", {"payment_id": "p"})).outcome == "failure"
    assert to_record(_event("gpuaas.allocation.rejected", {"allocation_id": "a"})).outcome == (
        "denied"
    )
    failed = to_record(_event("iam.auth.sign-in-failed", {"user_id": "u", "outcome": "denied"}))
    assert failed.outcome == "denied"


def test_not_privileged_types_are_not_recorded():
    assert to_record(_event("billing.balance.changed", {"tenant_id": T})) is None
    assert "metering.usage.recorded" not in RULES
    # an app replica's readiness (gpuaas.allocation.v1, a recorded topic) is skipped, never
    # an error that would dead-letter the batch
    for kind in ("workload_ready", "workload_unready"):
        ready = {"allocation_id": "a", "tenant_id": T, "state": "running"}
        assert to_record(_event(f"gpuaas.allocation.{kind}", ready)) is None


def test_floats_in_payloads_still_encode_and_the_tenant_seq_is_in_the_leaf():
    record = to_record(_event("gpuaas.node.registered", {"node_id": "n", "load": 0.5}))
    record = with_tenant_seq(record, 7)
    decoded = decode_record(encode_record(record))
    assert decoded.details["data"]["load"] == "0.5"
    assert decoded.details["tenant_seq"] == 7


def test_trace_id_of_a_traceparent():
    assert trace_id_of("00-" + "a" * 32 + "-" + "b" * 16 + "-01") == "a" * 32
    assert trace_id_of("garbage") is None
    assert trace_id_of(None) is None


def test_every_recorded_type_is_a_contract_type_on_a_topic_the_log_consumes():
    from audit.bootstrap import RECORDED_TOPICS
    from gpucloud_contracts.catalog import EVENT_TYPES

    unknown = sorted(t for t in RULES if t not in EVENT_TYPES)
    assert unknown == []
    unread = sorted(t for t in RULES if EVENT_TYPES[t].topic not in RECORDED_TOPICS)
    assert unread == []


def test_operator_ledger_and_quota_movements_name_their_target():
    grant = to_record(_event("billing.credit.granted", {"grant_id": "g", "tenant_id": T}))
    reversal = to_record(
        _event("billing.transaction.reversed", {"transaction_id": "x", "tenant_id": T})
    )
    quota = to_record(
        _event("gpuaas.quota.changed", {"project_id": "p", "tenant_id": T}, actor="op",
               actor_kind="operator")
    )  # fmt: skip
    assert (grant.target.kind, grant.target.id, grant.target.tenant) == ("grant", "g", T)
    assert (reversal.target.kind, reversal.target.id) == ("transaction", "x")
    assert (quota.target.kind, quota.target.id, quota.target.project) == ("quota", "p", "p")
    assert (quota.actor.subject, quota.actor.kind, quota.actor.tenant) == ("op", "operator", None)
