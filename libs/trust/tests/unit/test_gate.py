"""The launch gate rule shared by gpuaas and the node agent: each refusal reason, in the
order the rule checks them, and what passes."""

import dataclasses
import datetime as dt

import pytest

from gpucloud_trust import intoto
from gpucloud_trust.digests import digest_bytes
from gpucloud_trust.gate import (
    LaunchRefused,
    Release,
    TrustedKey,
    check_launch,
    key_counts,
    key_may_sign,
)
from gpucloud_trust.keys import SigningKey

NOW = dt.datetime(2026, 12, 3, 12, 0, tzinfo=dt.UTC)
DIGEST = digest_bytes(b"manifest")
OTHER = digest_bytes(b"another manifest")
PUBLISHER, COSIGNER, STRANGER = SigningKey.generate(), SigningKey.generate(), SigningKey.generate()


def _envelope(*signers, digest=DIGEST, version="1.0.0"):
    statement = intoto.release_statement(digest, tenant="t", app="llm", version=version)
    return statement.sign(list(signers))


def _release(*signers, **changes) -> Release:
    base = Release(
        tenant="t",
        app="llm",
        version="1.0.0",
        manifest_digest=DIGEST,
        envelopes=(_envelope(*signers),) if signers else (),
        channels=frozenset({"dev", "staging", "stable"}),
        thresholds={"dev": 1, "staging": 1, "stable": 1},
    )
    return dataclasses.replace(base, **changes)


def _key(signer, status="active", expires_at=None) -> TrustedKey:
    return TrustedKey(signer.public, status, expires_at)


def _reason(release, keys, digest=DIGEST, channel="stable") -> str:
    with pytest.raises(LaunchRefused) as refused:
        check_launch(release, digest, channel, keys, NOW)
    return refused.value.reason


def test_a_signed_promoted_release_passes_with_the_keys_that_counted():
    verified = check_launch(_release(PUBLISHER), DIGEST, "stable", [_key(PUBLISHER)], NOW)
    assert verified.signer_keyids == (PUBLISHER.keyid,)


def test_a_rotated_key_still_counts_and_an_unexpired_one_too():
    keys = [_key(PUBLISHER, "rotated", NOW + dt.timedelta(seconds=1))]
    assert check_launch(_release(PUBLISHER), DIGEST, "stable", keys, NOW)


@pytest.mark.parametrize(
    ("release", "keys", "digest", "reason"),
    [
        (None, [_key(PUBLISHER)], DIGEST, "unknown-release"),
        (_release(PUBLISHER), [_key(PUBLISHER)], OTHER, "manifest-digest"),
        (_release(PUBLISHER, yanked=True), [_key(PUBLISHER)], DIGEST, "yanked"),
        (_release(), [_key(PUBLISHER)], DIGEST, "unsigned"),
        (_release(STRANGER), [_key(PUBLISHER)], DIGEST, "untrusted"),
        (_release(PUBLISHER), [_key(PUBLISHER, "revoked")], DIGEST, "revoked"),
        (_release(PUBLISHER), [_key(PUBLISHER, expires_at=NOW)], DIGEST, "expired"),
        (
            _release(PUBLISHER, thresholds={"stable": 2}),
            [_key(PUBLISHER), _key(COSIGNER)],
            DIGEST,
            "below-threshold",
        ),
        (_release(PUBLISHER, channels=frozenset({"dev"})), [_key(PUBLISHER)], DIGEST, "unpromoted"),
    ],
    ids=[
        "unknown",
        "tampered-manifest",
        "yanked",
        "unsigned",
        "wrong-key",
        "revoked-key",
        "expired-trust",
        "below-threshold",
        "unpromoted",
    ],
)
def test_each_refusal_names_its_reason(release, keys, digest, reason):
    assert _reason(release, keys, digest) == reason


def test_a_statement_about_another_release_or_bundle_counts_for_nothing():
    for envelope in (_envelope(PUBLISHER, version="2.0.0"), _envelope(PUBLISHER, digest=OTHER)):
        release = _release(envelopes=(envelope,))
        assert _reason(release, [_key(PUBLISHER)]) == "untrusted"


def test_yanked_wins_over_unsigned_and_the_threshold_is_the_channels():
    assert _reason(_release(yanked=True), []) == "yanked"
    two = _release(PUBLISHER, thresholds={"dev": 1, "stable": 2})
    keys = [_key(PUBLISHER)]
    assert check_launch(two, DIGEST, "dev", keys, NOW)
    assert _reason(two, keys) == "below-threshold"


def test_a_revoked_cosigner_drops_a_release_below_its_threshold():
    release = _release(PUBLISHER, COSIGNER, thresholds={"stable": 2})
    assert check_launch(release, DIGEST, "stable", [_key(PUBLISHER), _key(COSIGNER)], NOW)
    assert _reason(release, [_key(PUBLISHER), _key(COSIGNER, "revoked")]) == "below-threshold"


def test_key_trust_rules():
    later = NOW + dt.timedelta(hours=1)
    assert key_counts("active", None, NOW) and key_counts("rotated", later, NOW)
    assert not key_counts("revoked", None, NOW)
    assert not key_counts("active", NOW, NOW)  # expiry is exclusive: at the instant, expired
    assert key_may_sign("active", later, NOW)
    assert not key_may_sign("rotated", None, NOW)
    assert not key_may_sign("active", NOW - dt.timedelta(seconds=1), NOW)


def test_an_unknown_channel_is_a_programming_error():
    with pytest.raises(ValueError, match="unknown channel"):
        check_launch(_release(PUBLISHER), DIGEST, "prod", [_key(PUBLISHER)], NOW)
