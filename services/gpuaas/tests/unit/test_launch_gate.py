"""The launch gate's decision (domain/launch_gate.py), pure: from projection rows to Allowed
or Refused with one reason per case, first failure first."""

import dataclasses
import datetime as dt
import uuid

import pytest

from gpuaas.domain.launch_gate import (
    PLATFORM,
    Allowed,
    BundleRequest,
    DecisionMemo,
    KeyFacts,
    Refused,
    ReleaseFacts,
    decide,
)
from gpucloud_trust import intoto
from gpucloud_trust.digests import digest_bytes
from gpucloud_trust.keys import SigningKey

NOW = dt.datetime(2026, 12, 7, 12, 0, tzinfo=dt.UTC)
TENANT, PROJECT, OTHER_PROJECT = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
DIGEST = digest_bytes(b"manifest")
TAMPERED = digest_bytes(b"manifest with one byte changed")
PUBLISHER, STRANGER = SigningKey.generate(), SigningKey.generate()
REQUEST = BundleRequest("llm", "1.0.0", DIGEST)


def _envelope(signer, digest=DIGEST, tenant=TENANT, version="1.0.0") -> str:
    statement = intoto.release_statement(digest, tenant=str(tenant), app="llm", version=version)
    return statement.sign([signer]).to_json().decode()


def _release(*envelopes, **changes) -> ReleaseFacts:
    base = ReleaseFacts(
        tenant_id=TENANT,
        project_id=PROJECT,
        app="llm",
        version="1.0.0",
        manifest_digest=DIGEST,
        envelopes=envelopes,
        channels=frozenset({"dev", "staging", "stable"}),
        yanked=False,
        thresholds={"dev": 1, "staging": 1, "stable": 1},
    )
    return dataclasses.replace(base, **changes)


def _key(signer, status="active", expires_at=None) -> KeyFacts:
    return KeyFacts(signer.public.raw, status, expires_at)


def _decide(release, keys, request=REQUEST, channel="stable", project=PROJECT):
    return decide(TENANT, project, request, channel, release, keys, NOW)


def test_a_signed_promoted_release_is_allowed_with_its_signer():
    outcome = _decide(_release(_envelope(PUBLISHER)), [_key(PUBLISHER)])
    assert outcome == Allowed(TENANT, "stable", (PUBLISHER.keyid,))


SIGNED = _envelope(PUBLISHER)


@pytest.mark.parametrize(
    ("release", "keys", "request_", "channel", "reason"),
    [
        pytest.param(None, [_key(PUBLISHER)], REQUEST, "stable", "unknown-release", id="unknown"),
        pytest.param(_release(), [_key(PUBLISHER)], REQUEST, "stable", "unsigned", id="unsigned"),
        pytest.param(
            _release("{not an envelope"), [_key(PUBLISHER)], REQUEST, "stable", "unsigned",
            id="garbage-envelope",
        ),
        pytest.param(
            _release(_envelope(STRANGER)), [_key(PUBLISHER)], REQUEST, "stable", "untrusted",
            id="wrong-key",
        ),
        pytest.param(
            _release(SIGNED), [_key(PUBLISHER)], dataclasses.replace(REQUEST, digest=TAMPERED),
            "stable", "manifest-digest", id="tampered-digest",
        ),
        pytest.param(
            # the projection's digest and the signed one differ: the signature is for another
            _release(_envelope(PUBLISHER, digest=TAMPERED)), [_key(PUBLISHER)], REQUEST,
            "stable", "untrusted", id="signature-of-another-manifest",
        ),
        pytest.param(
            _release(SIGNED, channels=frozenset({"dev"})), [_key(PUBLISHER)], REQUEST,
            "stable", "unpromoted", id="unpromoted",
        ),
        pytest.param(
            _release(SIGNED, channels=frozenset({"dev"})), [_key(PUBLISHER)], REQUEST,
            "staging", "unpromoted", id="unpromoted-to-staging",
        ),
        pytest.param(
            _release(SIGNED), [_key(PUBLISHER, "revoked")], REQUEST, "stable", "revoked",
            id="revoked-key",
        ),
        pytest.param(
            _release(SIGNED), [_key(PUBLISHER, expires_at=NOW)], REQUEST, "stable", "expired",
            id="expired-key",
        ),
        pytest.param(
            _release(SIGNED, yanked=True, channels=frozenset()), [_key(PUBLISHER)], REQUEST,
            "stable", "yanked", id="yanked",
        ),
        pytest.param(
            _release(SIGNED, thresholds={"stable": 2}), [_key(PUBLISHER)], REQUEST, "stable",
            "below-threshold", id="below-threshold",
        ),
        pytest.param(
            _release(_envelope(PUBLISHER, tenant=uuid.uuid4())), [_key(PUBLISHER)], REQUEST,
            "stable", "untrusted", id="statement-of-another-tenant",
        ),
    ],
)  # fmt: skip
def test_each_refusal_names_its_reason(release, keys, request_, channel, reason):
    outcome = _decide(release, keys, request_, channel)
    assert isinstance(outcome, Refused)
    assert outcome.reason == reason


def test_a_lower_channel_passes_when_the_project_requires_only_it():
    release = _release(SIGNED, channels=frozenset({"dev"}))
    assert isinstance(_decide(release, [_key(PUBLISHER)], channel="dev"), Allowed)


def test_a_rotated_key_still_counts():
    assert isinstance(_decide(_release(SIGNED), [_key(PUBLISHER, "rotated")]), Allowed)


def test_another_projects_app_reads_as_unknown():
    outcome = _decide(_release(SIGNED), [_key(PUBLISHER)], project=OTHER_PROJECT)
    assert outcome == Refused("unknown-release", outcome.detail)


def test_another_tenants_release_reads_as_unknown():
    release = _release(SIGNED, tenant_id=uuid.uuid4())
    assert _decide(release, [_key(PUBLISHER)]).reason == "unknown-release"


def test_a_platform_public_app_launches_from_any_project():
    envelope = _envelope(PUBLISHER, tenant=PLATFORM)
    release = _release(envelope, tenant_id=PLATFORM, project_id=None)
    request = dataclasses.replace(REQUEST, platform=True)
    outcome = _decide(release, [_key(PUBLISHER)], request, project=OTHER_PROJECT)
    assert outcome == Allowed(PLATFORM, "stable", (PUBLISHER.keyid,))


def test_an_unknown_channel_is_a_programming_error():
    with pytest.raises(ValueError, match="unknown channel"):
        _decide(_release(SIGNED), [_key(PUBLISHER)], channel="prod")


# ----------------------------------------------------------------------------- the memo


def test_the_memo_answers_a_repeated_decision_without_deciding_again():
    memo = DecisionMemo()
    release, keys = _release(SIGNED), [_key(PUBLISHER)]
    first = memo.decide(TENANT, PROJECT, REQUEST, "stable", release, keys, NOW)
    later = NOW + dt.timedelta(hours=1)
    again = memo.decide(
        TENANT, PROJECT, REQUEST, "stable", _release(SIGNED), [_key(PUBLISHER)], later
    )
    assert first == Allowed(TENANT, "stable", (PUBLISHER.keyid,))
    assert again is first  # the same object: answered from the memo


@pytest.mark.parametrize(
    ("release", "keys", "reason"),
    [
        pytest.param(_release(SIGNED, yanked=True), [_key(PUBLISHER)], "yanked", id="yanked"),
        pytest.param(_release(SIGNED), [_key(PUBLISHER, "revoked")], "revoked", id="revoked"),
        pytest.param(_release(SIGNED, channels=frozenset({"dev"})), [_key(PUBLISHER)], "unpromoted",
                     id="demoted"),
        pytest.param(_release(SIGNED, thresholds={"stable": 2}), [_key(PUBLISHER)],
                     "below-threshold", id="threshold-raised"),
    ],
)  # fmt: skip
def test_a_changed_fact_is_decided_again(release, keys, reason):
    memo = DecisionMemo()
    assert isinstance(memo.decide(TENANT, PROJECT, REQUEST, "stable", _release(SIGNED),
                                  [_key(PUBLISHER)], NOW), Allowed)  # fmt: skip
    outcome = memo.decide(TENANT, PROJECT, REQUEST, "stable", release, keys, NOW)
    assert isinstance(outcome, Refused) and outcome.reason == reason


def test_a_memoized_allowance_ends_when_a_signer_key_expires():
    memo = DecisionMemo()
    expiry = NOW + dt.timedelta(minutes=5)
    keys = [_key(PUBLISHER, expires_at=expiry)]
    assert isinstance(memo.decide(TENANT, PROJECT, REQUEST, "stable", _release(SIGNED), keys,
                                  NOW), Allowed)  # fmt: skip
    just_before = expiry - dt.timedelta(microseconds=1)
    assert isinstance(memo.decide(TENANT, PROJECT, REQUEST, "stable", _release(SIGNED), keys,
                                  just_before), Allowed)  # fmt: skip
    at_expiry = memo.decide(TENANT, PROJECT, REQUEST, "stable", _release(SIGNED), keys, expiry)
    assert isinstance(at_expiry, Refused) and at_expiry.reason == "expired"


def test_a_clock_stepped_back_is_decided_again():
    memo = DecisionMemo()
    expiry = NOW - dt.timedelta(minutes=1)  # expired at NOW, still trusted two minutes earlier
    keys = [_key(PUBLISHER, expires_at=expiry)]
    refused = memo.decide(TENANT, PROJECT, REQUEST, "stable", _release(SIGNED), keys, NOW)
    assert isinstance(refused, Refused) and refused.reason == "expired"
    earlier = NOW - dt.timedelta(minutes=2)
    assert isinstance(memo.decide(TENANT, PROJECT, REQUEST, "stable", _release(SIGNED), keys,
                                  earlier), Allowed)  # fmt: skip


def test_the_memo_is_bounded():
    memo = DecisionMemo(size=3)
    for i in range(10):
        memo.decide(TENANT, PROJECT, BundleRequest("llm", f"1.0.{i}", DIGEST), "stable", None,
                    [], NOW)  # fmt: skip
    assert len(memo._memo) == 3
