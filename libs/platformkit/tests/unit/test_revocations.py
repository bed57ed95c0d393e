"""The API-key revocation projection (no I/O: records are folded in directly) and the
verifier's use of it."""

import datetime as dt
import json
import time
import uuid

import jwt
from cryptography.hazmat.primitives.asymmetric import ed25519
from jwt.algorithms import OKPAlgorithm

from platformkit.definition import ServiceDefinition
from platformkit.kafka import KafkaSettings
from platformkit.memberships import MembershipProjection
from platformkit.revocations import API_KEY_REVOKED, RevocationProjection
from platformkit.runtime import ServiceRuntime
from platformkit.settings import ServiceSettings
from platformkit.tokens import AccessTokenVerifier, InvalidToken, JwksCache

NOW = 1_750_000_000.0

UNUSED = ServiceSettings("tests", kafka=KafkaSettings("unused:9092"))  # never connected


def _definition(kafka: bool = True) -> ServiceDefinition:
    return ServiceDefinition("t", "0", "a token-verifying service", [], kafka=kafka)


def _revoked(key_id: uuid.UUID, at: float, **extra) -> bytes:
    payload = {
        "key_id": str(key_id), "service_account_id": str(uuid.uuid4()),
        "tenant_id": str(uuid.uuid4()), "project_id": str(uuid.uuid4()),
        "revoked_at": dt.datetime.fromtimestamp(at, dt.UTC).isoformat(), **extra,
    }  # fmt: skip
    return json.dumps(payload).encode()


def test_revocations_are_kept_and_other_events_ignored():
    projection = RevocationProjection(UNUSED, clock=lambda: NOW)
    key, other = uuid.uuid4(), uuid.uuid4()
    projection.apply("iam.api-key.issued", _revoked(other, NOW))
    projection.apply(API_KEY_REVOKED, b"not json")
    projection.apply(API_KEY_REVOKED, _revoked(key, NOW - 10, a_future_field=1))
    assert projection.is_revoked(str(key)) and not projection.is_revoked(str(other))


def test_revocations_older_than_any_live_token_are_forgotten():
    clock = [NOW]
    projection = RevocationProjection(UNUSED, retention_s=900, clock=lambda: clock[0])
    ancient, recent = uuid.uuid4(), uuid.uuid4()
    projection.apply(API_KEY_REVOKED, _revoked(ancient, NOW - 3600))  # replayed from history
    projection.apply(API_KEY_REVOKED, _revoked(recent, NOW - 60))
    assert not projection.is_revoked(str(ancient)) and projection.is_revoked(str(recent))
    clock[0] = NOW + 900
    projection.prune()
    assert len(projection) == 0


async def test_the_verifier_refuses_tokens_of_revoked_keys():
    private = ed25519.Ed25519PrivateKey.generate()
    jwk = {**json.loads(OKPAlgorithm.to_jwk(private.public_key())), "kid": "k", "alg": "EdDSA"}

    class Source:
        async def fetch(self):
            return {"keys": [jwk]}

    projection = RevocationProjection(UNUSED)
    verifier = AccessTokenVerifier(
        JwksCache(Source()), issuer="iss", audience="aud", revocations=projection
    )
    now = int(time.time())
    key_id = uuid.uuid4()

    def mint(api_key: uuid.UUID) -> str:
        claims = {
            "iss": "iss", "aud": "aud", "sub": str(uuid.uuid4()), "kind": "service_account",
            "tenant": str(uuid.uuid4()), "proj": {str(uuid.uuid4()): ["member"]}, "iat": now,
            "exp": now + 300, "jti": uuid.uuid4().hex, "api_key": str(api_key),
        }  # fmt: skip
        return jwt.encode(claims, private, algorithm="EdDSA", headers={"kid": "k", "typ": "at+jwt"})

    token, other = mint(key_id), mint(uuid.uuid4())
    assert (await verifier.verify(token)).api_key_id == str(key_id)
    projection.apply(API_KEY_REVOKED, _revoked(key_id, time.time()))
    try:
        await verifier.verify(token)
        raise AssertionError("a revoked key's token was accepted")
    except InvalidToken as exc:
        assert "revoked" in str(exc.detail)
    assert (await verifier.verify(other)).kind == "service_account"


async def test_the_runtime_runs_the_projections_only_for_token_verifying_services():
    """Both token projections: revoked API keys and memberships (test_memberships.py)."""
    plain = ServiceRuntime(_definition(), ServiceSettings(service_name="a"))
    verifying = ServiceRuntime(
        _definition(), ServiceSettings(service_name="b", jwks_url="http://iam/jwks")
    )
    offline = ServiceRuntime(
        _definition(kafka=False), ServiceSettings(service_name="c", jwks_url="http://iam/jwks")
    )
    assert plain.revocations is None and offline.revocations is None
    assert isinstance(verifying.revocations, RevocationProjection)
    assert plain.memberships is None and offline.memberships is None
    assert isinstance(verifying.memberships, MembershipProjection)
