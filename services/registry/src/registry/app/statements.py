"""Attaching signed statements (DSSE envelopes of in-toto statements) to a version.

An envelope is accepted only if: it decodes; its payload is an in-toto Statement v1 whose
subject is the version's bundle digest; its predicate is well formed (a release statement
names this tenant, app and version); and at least one signature verifies against a key of the
tenant that is active now. The envelope is stored byte for byte, so anyone can verify it again
offline; attaching the same envelope twice changes nothing.
"""

from __future__ import annotations

import hashlib
from typing import Any

from gpucloud_trust import dsse, intoto
from gpucloud_trust.bundle import ReleaseClaim
from platformkit.db import Database, UnitOfWork
from platformkit.ids import uuid7
from registry.app.catalog import AppRef, require_app, require_version
from registry.app.common import Actor, Refused, StateConflict, emit, idempotent, invalid
from registry.app.releases import STATEMENT_ATTACHED, release_document, state_of, statement_out
from registry.app.trust import trusted
from registry.store import repository as repo

KINDS = {
    intoto.RELEASE: "release",
    intoto.SLSA_PROVENANCE: "provenance",
    intoto.EVIDENCE: "evidence",
}
MAX_ENVELOPE_BYTES = 512 * 1024


def _decode(envelope_json: str) -> tuple[dsse.Envelope, bytes]:
    raw = envelope_json.encode()
    if len(raw) > MAX_ENVELOPE_BYTES:
        raise invalid("envelope", f"at most {MAX_ENVELOPE_BYTES} bytes")
    try:
        return dsse.Envelope.from_json(raw), raw
    except dsse.InvalidEnvelope as exc:
        raise invalid("envelope", f"not a DSSE envelope: {exc}") from None


def check_statement(
    envelope: dsse.Envelope, manifest_digest: str, claim: ReleaseClaim
) -> intoto.Statement:
    if envelope.payload_type != dsse.IN_TOTO_PAYLOAD_TYPE:
        raise invalid("envelope", f"payloadType must be {dsse.IN_TOTO_PAYLOAD_TYPE}")
    try:
        statement = intoto.Statement.parse(envelope.payload)
        intoto.check_predicate(statement)
    except intoto.InvalidStatement as exc:
        raise invalid("envelope", f"payload: {exc}") from None
    if not statement.names_digest(manifest_digest):
        raise Refused(
            ["subject-mismatch"],
            f"the statement's subject is not this version's bundle {manifest_digest}",
            field="envelope",
        )
    if statement.predicate_type == intoto.RELEASE:
        p = statement.predicate
        said = (p.get("tenant"), p.get("app"), p.get("version"))
        if said != (claim.tenant, claim.app, claim.version):
            raise Refused(
                ["claim-mismatch"],
                f"the release statement names {said}, not this release",
                field="envelope",
            )
    return statement


async def attach_statement(
    db: Database,
    ref: AppRef,
    version_text: str,
    envelope_json: str,
    actor: Actor,
    key: str | None,
) -> tuple[int, bytes]:
    envelope, raw = _decode(envelope_json)
    envelope_digest = "sha256:" + hashlib.sha256(raw).hexdigest()

    async def work(uow: UnitOfWork) -> tuple[int, Any]:
        app = await require_app(uow, ref)
        version = await require_version(uow, app, version_text, lock=True)
        if state_of(await repo.promotions(uow, version["id"])).yanked:
            raise StateConflict("yanked", "statements cannot be attached to a yanked version")
        claim = ReleaseClaim(str(app["tenant_id"]), app["name"], version["version"])
        statement = check_statement(envelope, version["manifest_digest"], claim)
        existing = await repo.find_statement_by_digest(uow, version["id"], envelope_digest)
        if existing is not None:
            return 200, statement_out(existing)
        signers = dsse.signers(
            envelope, trusted(await repo.keys(uow, app["tenant_id"]), for_new=True)
        )
        if not signers:
            raise Refused(
                ["untrusted-signer"],
                "no signature verifies against an active, unexpired trusted key of the tenant",
                field="envelope",
            )
        row = await repo.insert_statement(
            uow,
            {
                "id": uuid7(),
                "version_id": version["id"],
                "kind": KINDS.get(statement.predicate_type, "other"),
                "predicate_type": statement.predicate_type,
                "evidence_kind": statement.predicate.get("kind")
                if statement.predicate_type == intoto.EVIDENCE
                else None,
                "envelope": raw,
                "envelope_digest": envelope_digest,
                "signer_key_ids": list(signers),
                "attached_by": actor.subject,
            },
        )
        document = await release_document(uow, app, version, actor=actor.subject)
        await emit(uow, STATEMENT_ATTACHED, version["id"], document, app["tenant_id"])
        return 201, statement_out(row)

    scope = f"registry.statements.{ref.tenant_id}"
    request = {"a": ref.name, "v": version_text, "e": envelope_digest}
    return await idempotent(db, scope, key, request, work)
