"""Promotion policy: what a version needs before it is promoted to a channel.

Per tenant and channel: a threshold of distinct signers, optionally the only keys whose
signatures count (`required_key_ids`; empty means any trusted key of the tenant), and the
kinds of evidence that must be on record (e.g. `uat`, `security-scan`). Without a policy a
channel needs one trusted signature and no evidence.

Signers are the tenant's keys that (a) are not revoked now and (b) signed a release statement
of exactly this bundle, tenant, app and version (the app layer verifies the DSSE envelopes;
this module only counts). A rotated required key is stood in for by its successors, so a
routine rotation does not lock a channel.

Evidence: the caller passes the kinds on record (app/promotions.py): passing audit evidence
records about the bundle in the app's tenant (app/evidence.py) and attached evidence-reference
statements signed by an unrevoked trusted key (app/trust.py).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Set
from dataclasses import dataclass, field

from registry.domain.channels import Channel

EVIDENCE_KIND = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
MAX_THRESHOLD = 16


class InvalidPolicy(ValueError):
    def __init__(self, field_name: str, message: str) -> None:
        super().__init__(f"{field_name}: {message}")
        self.field = field_name
        self.message = message


@dataclass(frozen=True)
class Policy:
    channel: Channel
    threshold: int = 1
    required_key_ids: tuple[str, ...] = ()
    required_evidence: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not 1 <= self.threshold <= MAX_THRESHOLD:
            raise InvalidPolicy("threshold", f"must be 1 to {MAX_THRESHOLD}")
        if self.required_key_ids and self.threshold > len(set(self.required_key_ids)):
            raise InvalidPolicy("threshold", "is more than the number of required keys")
        for kind in self.required_evidence:
            if not EVIDENCE_KIND.match(kind):
                raise InvalidPolicy("required_evidence", f"{kind!r} is not a kind name")


@dataclass(frozen=True)
class PolicyResult:
    policy: Policy
    counted_key_ids: tuple[str, ...]
    evidence_found: tuple[str, ...]
    reasons: tuple[str, ...] = field(default_factory=tuple)

    @property
    def passed(self) -> bool:
        return not self.reasons


def _stand_ins(required: Iterable[str], successors: Mapping[str, str]) -> set[str]:
    """The required keys plus, for each, the chain of keys that succeeded it."""
    allowed: set[str] = set()
    for key in required:
        seen = 0
        while key and key not in allowed and seen < 64:
            allowed.add(key)
            key = successors.get(key, "")
            seen += 1
    return allowed


def evaluate(
    policy: Policy,
    release_signers: Set[str],
    evidence_kinds: Set[str],
    successors: Mapping[str, str] | None = None,
) -> PolicyResult:
    """Count the signers and evidence against the policy; `reasons` lists what is missing:
    `unsigned` (no trusted release signature at all), `below-threshold`, `missing-evidence`."""
    counted = set(release_signers)
    if policy.required_key_ids:
        counted &= _stand_ins(policy.required_key_ids, successors or {})
    missing_evidence = [k for k in policy.required_evidence if k not in evidence_kinds]
    reasons = []
    if not release_signers:
        reasons.append("unsigned")
    elif len(counted) < policy.threshold:
        reasons.append("below-threshold")
    if missing_evidence:
        reasons.append("missing-evidence")
    return PolicyResult(
        policy,
        tuple(sorted(counted)),
        tuple(sorted(k for k in evidence_kinds if k in policy.required_evidence))
        if policy.required_evidence
        else tuple(sorted(evidence_kinds)),
        tuple(reasons),
    )


def explain(result: PolicyResult) -> str:
    p = result.policy
    parts = []
    if "unsigned" in result.reasons:
        parts.append("no release statement of this bundle is signed by a trusted, unrevoked key")
    if "below-threshold" in result.reasons:
        parts.append(
            f"{len(result.counted_key_ids)} of the {p.threshold} required signers"
            + (" (among the required keys)" if p.required_key_ids else "")
        )
    if "missing-evidence" in result.reasons:
        missing = sorted(set(p.required_evidence) - set(result.evidence_found))
        parts.append(f"missing evidence: {', '.join(missing)}")
    return f"{p.channel} policy: " + "; ".join(parts)
