"""Promotion (dev -> staging -> stable, never skipping a channel) and yanking.

One transaction per decision, under the version's row lock (two promotions of one version
never interleave): the state machine (domain/channels.py) allows the step; the channel's
policy (domain/policy.py) is evaluated from the statements as verified now against the
tenant's keys as they are now; the append-only promotion record (with the policy result) and
`registry.release.promoted` (the whole release document) commit together. A refusal changes
nothing.
"""

from __future__ import annotations

import msgspec

from gpucloud_contracts.events.registry import PolicyResult as PolicyOut
from gpucloud_contracts.events.registry import ReleaseChanged
from gpucloud_trust.bundle import ReleaseClaim
from platformkit.db import Database
from platformkit.ids import uuid7
from registry.app.catalog import AppRef, require_app, require_version
from registry.app.common import Actor, PromotionRefused, conflict, emit, invalid
from registry.app.evidence import recorded_kinds
from registry.app.keys import policy_from_row
from registry.app.releases import RELEASE_PROMOTED, RELEASE_YANKED, release_document, state_of
from registry.app.trust import standing, successors
from registry.domain.channels import Channel, IllegalTransition
from registry.domain.policy import evaluate, explain
from registry.store import repository as repo


async def promote(
    db: Database, ref: AppRef, version_text: str, channel: Channel, actor: Actor
) -> ReleaseChanged:
    async with db.unit_of_work() as uow:
        app = await require_app(uow, ref)
        version = await require_version(uow, app, version_text, lock=True)
        state = state_of(await repo.promotions(uow, version["id"]))
        try:
            state.promote(channel)
        except IllegalTransition as exc:
            raise conflict(exc) from None
        keys = await repo.keys(uow, app["tenant_id"])
        claim = ReleaseClaim(str(app["tenant_id"]), app["name"], version["version"])
        now = standing(
            await repo.statements(uow, version["id"]), keys, version["manifest_digest"], claim
        )
        policy = policy_from_row(await repo.policy(uow, app["tenant_id"], channel.value), channel)
        on_record = now.evidence_kinds | await recorded_kinds(
            uow, app["tenant_id"], version["manifest_digest"]
        )
        result = evaluate(policy, now.release_signers, on_record, successors(keys))
        if not result.passed:
            raise PromotionRefused(list(result.reasons), explain(result))
        record = PolicyOut(
            channel=channel.value,
            threshold=policy.threshold,
            required_key_ids=list(policy.required_key_ids),
            required_evidence=list(policy.required_evidence),
            counted_key_ids=list(result.counted_key_ids),
            evidence_found=list(result.evidence_found),
            passed=True,
        )
        await repo.insert_promotion(
            uow,
            {
                "id": uuid7(),
                "version_id": version["id"],
                "action": "promote",
                "channel": channel.value,
                "actor": actor.subject,
                "actor_kind": actor.kind,
                "reason": None,
                "policy": msgspec.json.encode(record).decode(),
            },
        )
        document = await release_document(
            uow, app, version, channel=channel.value, policy=record, actor=actor.subject
        )
        await emit(uow, RELEASE_PROMOTED, version["id"], document, app["tenant_id"])
        await uow.commit()
    return document


async def yank(
    db: Database, ref: AppRef, version_text: str, reason: str, actor: Actor
) -> ReleaseChanged:
    if not reason.strip():
        raise invalid("reason", "say why the version is yanked")
    async with db.unit_of_work() as uow:
        app = await require_app(uow, ref)
        version = await require_version(uow, app, version_text, lock=True)
        try:
            state_of(await repo.promotions(uow, version["id"])).yank()
        except IllegalTransition as exc:
            raise conflict(exc) from None
        await repo.insert_promotion(
            uow,
            {
                "id": uuid7(),
                "version_id": version["id"],
                "action": "yank",
                "channel": None,
                "actor": actor.subject,
                "actor_kind": actor.kind,
                "reason": reason.strip(),
                "policy": None,
            },
        )
        document = await release_document(uow, app, version, actor=actor.subject)
        await emit(uow, RELEASE_YANKED, version["id"], document, app["tenant_id"])
        await uow.commit()
    return document
