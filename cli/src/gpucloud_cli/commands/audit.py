"""audit verify: the tenant's audit trail, checked against what this machine pinned before
(gpucloud_cli.auditlog; docs/cli.md)."""

from __future__ import annotations

import json

import click

from gpucloud_cli.app import App, json_option, pass_app
from gpucloud_cli.auditlog import Pin, compare_witness, load_pin, pin_path, verify_trail
from gpucloud_cli.config import write_private
from gpucloud_cli.output import emit_json, fields
from gpucloud_cli.sdk.errors import InvalidInput, Unverified


@click.group()
def audit() -> None:
    """Verify the tenant's audit trail against checkpoints pinned here."""


@audit.command()
@click.option(
    "--key",
    "given_key",
    metavar="VKEY",
    help="The log's verifier key, obtained out of band (default: pinned on first use).",
)
@json_option
@pass_app
def verify(app: App, given_key: str | None, as_json: bool) -> None:
    """Check every record of the tenant's trail: signature, proofs, no gap, no rewrite.

    Downloads the tenant's records below the audit log's latest signed checkpoint, each
    with its inclusion proof, and checks them against the log key and the checkpoint this
    machine verified last time (the new tree must extend it), and that the tenant's
    sequence has no gap. Pins the new checkpoint only when everything verified. Needs a
    tenant role of owner or admin. Exit code 12 names the first inconsistency.
    """
    scope = app.scope()
    client, tenant_id = scope.client, scope.tenant_id
    path = pin_path(app.store.directory, client.gateway)
    pinned = load_pin(path)
    served = client.audit_log_key()
    origin, vkey = str(served["origin"]), str(served["vkey"])
    trusted = given_key or (pinned.vkey if pinned else vkey)
    if pinned and given_key and given_key != pinned.vkey:
        raise InvalidInput("key", "differs from the key pinned here; remove the pin to change it")
    document = {
        "context": scope.context.name,
        "tenant_id": tenant_id,
        "origin": origin,
        "pinned_before": pinned.size if pinned and pinned.note else None,
    }
    if vkey != trusted or (pinned and pinned.origin != origin):
        _refuse(
            {**document, "checkpoint": None, "records": 0, "checked": 0},
            "key_changed",
            f"the log now presents key {vkey!r} (origin {origin!r}); this machine pinned "
            f"{trusted!r}",
        )
    latest = client.audit_checkpoint()
    size = int(latest["size"])
    consistency = None
    if pinned and pinned.note and pinned.size <= size:
        consistency = client.audit_consistency(pinned.size, size)["proof"]
    records = list(client.audit_tenant_records(tenant_id, size)) if size else []
    outcome = verify_trail(
        vkey=trusted,
        origin=origin,
        latest_note=str(latest["note"]),
        pinned=pinned,
        consistency=consistency,
        records=records,
        tenant_id=tenant_id,
    )
    document |= {
        "checkpoint": {"size": outcome.size, "root": outcome.root, "time": outcome.time},
        "records": outcome.records,
        "checked": outcome.checked,
        "last_tenant_seq": outcome.last_seq,
    }
    if outcome.finding is not None:
        f = outcome.finding
        _refuse(document, f.kind, f.detail, index=f.index)
    witnessed = client.witnessed_checkpoint(origin)
    document["witness"] = None
    if witnessed is not None:
        w_size = int(witnessed["size"])
        first, second = sorted((w_size, outcome.size))
        proof = client.audit_consistency(first, second)["proof"] if first != second else []
        found = compare_witness(
            vkey=trusted,
            origin=origin,
            latest_note=str(latest["note"]),
            witness_note=str(witnessed["note"]),
            proof=proof,
        )
        document["witness"] = {"service": "registry", "size": w_size, "agrees": found is None}
        if found is not None:
            _refuse(document, found.kind, found.detail, index=found.index)
    pin = pinned or Pin(gateway=client.gateway, origin=origin, vkey=trusted)
    pin.note, pin.size = str(latest["note"]), outcome.size
    if outcome.last_seq is not None:
        pin.tenant_seq[tenant_id] = max(outcome.last_seq, pin.tenant_seq.get(tenant_id, 0))
    app.store.ensure_directory()
    path.parent.mkdir(mode=0o700, exist_ok=True)
    write_private(path, json.dumps(pin.to_json(), indent=2) + "\n")
    if as_json:
        emit_json({**document, "verified": True, "finding": None})
        return
    fields(
        [
            ("log", origin),
            ("checkpoint", f"tree size {outcome.size}, signed {outcome.time or '-'}"),
            ("pinned before", document["pinned_before"] or "nothing (first run: pinned now)"),
            ("records", f"{outcome.records} of tenant {scope.context.tenant_slug}, all proven"),
            ("tenant_seq", outcome.last_seq if outcome.last_seq is not None else "-"),
            ("witness", _witness_line(document["witness"])),
        ],
        title="Audit trail verified",
    )


def _witness_line(witness: dict | None) -> str:
    if witness is None:
        return "none yet (registry has witnessed no checkpoint of this log)"
    return f"registry holds tree size {witness['size']}: consistent"


def _refuse(document: dict, kind: str, detail: str, *, index: int | None = None) -> None:
    finding = {"kind": kind, "index": index, "detail": detail}
    where = f" at index {index}" if index is not None else ""
    raise Unverified(
        f"{kind}{where}: {detail}",
        document={**document, "verified": False, "finding": finding},
    )
