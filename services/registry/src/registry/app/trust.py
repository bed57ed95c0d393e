"""Verifying what is attached to a version, always against the tenant's keys as they are now
(a revoked key, or one whose trust expired, counts for nothing, for old signatures as well as
new ones)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from gpucloud_trust.bundle import ReleaseClaim, release_signers
from gpucloud_trust.dsse import Envelope, VerificationFailed, verify
from gpucloud_trust.intoto import EVIDENCE, InvalidStatement, Statement
from gpucloud_trust.keys import PublicKey
from registry.domain import keys as key_rules


def trusted(keys: Sequence[Any], *, for_new: bool = False) -> list[PublicKey]:
    """The tenant's keys whose signatures count now (for_new: that may sign a new statement)."""
    allowed = key_rules.may_sign_new if for_new else key_rules.counts
    now = dt.datetime.now(dt.UTC)
    return [
        PublicKey.from_raw(bytes(k["public_key"]))
        for k in keys
        if allowed(k["status"], k["expires_at"], now)
    ]


def successors(keys: Sequence[Any]) -> dict[str, str]:
    by_id = {k["id"]: k["key_id"] for k in keys}
    return {k["key_id"]: by_id[k["successor_id"]] for k in keys if k["successor_id"] in by_id}


def envelopes(statements: Sequence[Any], kind: str) -> list[Envelope]:
    return [Envelope.from_json(bytes(s["envelope"])) for s in statements if s["kind"] == kind]


@dataclass(frozen=True)
class Standing:
    """What a version's statements establish right now."""

    release_signers: frozenset[str]
    evidence_kinds: frozenset[str]


def standing(
    statements: Sequence[Any], keys: Sequence[Any], manifest_digest: str, claim: ReleaseClaim
) -> Standing:
    counting = trusted(keys)
    signers = release_signers(envelopes(statements, "release"), counting, manifest_digest, claim)
    kinds = set()
    for envelope in envelopes(statements, "evidence"):
        try:
            statement = Statement.parse(verify(envelope, counting).payload)
        except (VerificationFailed, InvalidStatement):
            continue
        if statement.predicate_type == EVIDENCE and statement.names_digest(manifest_digest):
            kind = statement.predicate.get("kind")
            if isinstance(kind, str):
                kinds.add(kind)
    return Standing(frozenset(signers), frozenset(kinds))
