"""From a family's event to an AU-3 audit record. Pure (stdlib + gpucloud_trust).

Each recorded event type has a `Rule`: the kind of its target and the payload field naming
it, the payload fields that name the acting subject when the publisher did not carry one,
and the outcome. The record's fields (NIST SP 800-53 AU-3):

- who: `actor` = the CloudEvents extension attributes `actor` / `actorkind` that the kit
  writes from the request's principal (platformkit.outbox), else the rule's payload field
  (``granted_by``, ``suspended_by``, ...), else the publishing service itself
  (kind ``service``: an action the platform took on its own, e.g. a scheduler decision);
  the actor's tenant is the event's tenant;
- what: `action` = the event type (``iam.membership.granted``), `target` = kind + id from
  the payload, with the tenant and project the payload names;
- when: the event's time (UTC); where: the `clientaddr` extension (the caller's address as
  the gateway forwarded it) and the service (the CloudEvents source);
- outcome: the rule's (``failure`` for ``*.failed``, ``*.rejected``, ...), or the payload's
  ``outcome`` when the event carries one (iam's sign-in events);
- trace id: from the event's W3C traceparent.

`details` keeps the whole payload (floats become strings: the canonical encoding refuses
floats) plus ``tenant_seq``, the record's position in its tenant's trail, so a tenant's
verifier can tell that no record of its own was withheld between two it holds.
"""

import dataclasses
import datetime as dt
from collections.abc import Mapping
from typing import Any

from gpucloud_trust.records import Actor, AuditRecord, Target


@dataclasses.dataclass(frozen=True)
class Rule:
    target_kind: str
    target_field: str
    actor_fields: tuple[str, ...] = ()
    outcome: str = "success"


_IAM = {
    "iam.tenant.created": Rule("tenant", "tenant_id"),
    "iam.tenant.suspended": Rule("tenant", "tenant_id", ("suspended_by",)),
    "iam.tenant.mfa-policy-changed": Rule("tenant", "tenant_id", ("changed_by",)),
    "iam.user.registered": Rule("user", "user_id", ("user_id",)),
    "iam.user.mfa-enabled": Rule("user", "user_id", ("user_id",)),
    "iam.project.created": Rule("project", "project_id", ("created_by",)),
    "iam.membership.granted": Rule("membership", "membership_id", ("granted_by",)),
    "iam.membership.revoked": Rule("membership", "membership_id", ("revoked_by",)),
    "iam.service-account.created": Rule("service_account", "service_account_id", ("created_by",)),
    "iam.api-key.issued": Rule("api_key", "key_id", ("issued_by",)),
    "iam.api-key.revoked": Rule("api_key", "key_id", ("revoked_by",)),
    "iam.ssh-key.added": Rule("ssh_key", "key_id", ("user_id",)),
    "iam.ssh-key.revoked": Rule("ssh_key", "key_id", ("revoked_by",)),
    "iam.auth.signed-in": Rule("user", "user_id", ("user_id",)),
    "iam.auth.sign-in-failed": Rule("user", "user_id", (), "failure"),
}
_BILLING = {
    "billing.payment.settled": Rule("payment", "payment_id"),
    "billing.payment.failed": Rule("payment", "payment_id", (), "failure"),
    "billing.payment.refunded": Rule("refund", "refund_id"),
    "billing.payment.refund_failed": Rule("refund", "refund_id", (), "failure"),
    "billing.price.changed": Rule("price", "price_id"),
    "billing.credit.granted": Rule("grant", "grant_id"),
    "billing.transaction.reversed": Rule("transaction", "transaction_id"),
    "billing.reconciliation.mismatch": Rule("reconciliation", "mismatch_id", (), "failure"),
}
_ALLOCATION = Rule("allocation", "allocation_id")
_NODE = Rule("node", "node_id")
_GPUAAS = {
    **{
        f"gpuaas.allocation.{state}": _ALLOCATION
        for state in ("requested", "scheduled", "provisioning", "running", "releasing", "released")
    },
    "gpuaas.allocation.rejected": Rule("allocation", "allocation_id", (), "denied"),
    "gpuaas.allocation.failed": Rule("allocation", "allocation_id", (), "failure"),
    "gpuaas.allocation.release_failed": Rule("allocation", "allocation_id", (), "failure"),
    "gpuaas.quota.changed": Rule("quota", "project_id"),
    **{
        f"gpuaas.node.{state}": _NODE
        for state in ("registered", "ready", "cordoned", "draining", "offline", "retired")
    },
}
_SESSION = Rule("terminal_session", "session_id", ("user_id",))
_TERMINAL = {
    "terminal.session.minted": _SESSION,
    "terminal.session.opened": _SESSION,
    "terminal.session.detached": _SESSION,
    "terminal.session.closed": _SESSION,
    "terminal.session.expired": _SESSION,
    "terminal.session.revoked": _SESSION,
    "terminal.policy.changed": Rule("terminal_policy", "tenant_id", ("changed_by",)),
}

_RELEASE = Rule("release", "version_id", ("actor",))
_KEY = Rule("publisher_key", "id", ("actor",))
_INSTANCE = Rule("app_instance", "instance_id", ("actor",))
_REGISTRY = {
    "registry.version.published": _RELEASE,
    "registry.statement.attached": _RELEASE,
    "registry.release.promoted": _RELEASE,
    "registry.release.yanked": _RELEASE,
    "registry.key.added": _KEY,
    "registry.key.rotated": _KEY,
    "registry.key.renewed": _KEY,
    "registry.key.revoked": _KEY,
}
_APPPLATFORM = {
    # Desired-state changes and how instances end; the controller's intermediate steps
    # (provisioning, starting, ready, degraded) are not privileged actions.
    "appplatform.instance.created": _INSTANCE,
    "appplatform.instance.updated": _INSTANCE,
    "appplatform.instance.stopping": _INSTANCE,
    "appplatform.instance.stopped": _INSTANCE,
    "appplatform.instance.failed": Rule("app_instance", "instance_id", ("actor",), "failure"),
}
_AUDIT = {"audit.evidence.recorded": Rule("evidence", "evidence_id", ("producer",))}

RULES: Mapping[str, Rule] = {
    **_IAM,
    **_BILLING,
    **_GPUAAS,
    **_TERMINAL,
    **_REGISTRY,
    **_APPPLATFORM,
    **_AUDIT,
}
"""Every recorded event type. An event of a recorded topic whose type has no rule (a new
type, a high-volume one such as a balance change) is not a privileged action: skipped."""


@dataclasses.dataclass(frozen=True)
class SourceEvent:
    """What audit reads of a CloudEvent (platformkit.envelope) and its decoded payload."""

    id: str
    type: str
    source: str
    subject: str
    time: dt.datetime
    payload: Mapping[str, Any]
    tenant: str | None = None
    trace_id: str | None = None
    actor: str | None = None
    actor_kind: str | None = None
    client_address: str | None = None


def trace_id_of(traceparent: str | None) -> str | None:
    """The trace id of a W3C traceparent (``00-<32 hex>-<16 hex>-<2 hex>``)."""
    if not traceparent:
        return None
    parts = traceparent.split("-")
    return parts[1] if len(parts) == 4 and len(parts[1]) == 32 else None


def _text(value: Any) -> str | None:
    return str(value) if value not in (None, "") else None


def _json_safe(value: Any) -> Any:
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, Mapping):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    return value


def with_tenant_seq(record: AuditRecord, tenant_seq: int) -> AuditRecord:
    """`record` with its position in its tenant's trail (1, 2, ...) in its details."""
    return dataclasses.replace(record, details={**record.details, "tenant_seq": tenant_seq})


def tenant_of(event: SourceEvent) -> str | None:
    """The tenant whose trail the event's record joins."""
    return event.tenant or _text(event.payload.get("tenant_id"))


def to_record(event: SourceEvent, tenant_seq: int | None = None) -> AuditRecord | None:
    """The audit record of `event` (at `tenant_seq` in its tenant's trail, when given), or
    None when its type is not a privileged action."""
    rule = RULES.get(event.type)
    if rule is None:
        return None
    payload = event.payload
    tenant = tenant_of(event)
    actor = _text(event.actor)
    kind = _text(event.actor_kind)
    if actor is None:
        actor = next((_text(payload.get(f)) for f in rule.actor_fields if payload.get(f)), None)
        kind = "user" if actor is not None else None
    if actor is None:
        actor, kind = event.source, "service"
    outcome = payload.get("outcome")
    target_id = _text(payload.get(rule.target_field)) or event.subject
    return AuditRecord(
        event_id=event.id,
        event_type=event.type,
        time=event.time.astimezone(dt.UTC),
        actor=Actor(
            subject=actor, kind=kind or "user", tenant=tenant if kind != "operator" else None
        ),
        action=event.type,
        target=Target(
            kind=rule.target_kind,
            id=target_id,
            tenant=tenant,
            project=_text(payload.get("project_id")),
        ),
        outcome=outcome if outcome in ("success", "failure", "denied") else rule.outcome,
        service=event.source,
        client_address=_text(event.client_address),
        trace_id=event.trace_id,
        details={"data": _json_safe(dict(payload))}
        | ({"tenant_seq": tenant_seq} if tenant_seq is not None else {}),
    )
