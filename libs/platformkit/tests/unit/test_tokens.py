"""Access-token verification (RFC 8725): the negative suite, the JWKS cache, the principal
and the RFC 9470 step-up helper. No I/O: the JWKS comes from an in-memory source."""

import base64
import hashlib
import hmac
import json
import time
import uuid

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from jwt.algorithms import ECAlgorithm, OKPAlgorithm

from platformkit.auth import Principal, StepUpRequired
from platformkit.errors import Forbidden
from platformkit.tokens import AccessTokenVerifier, InvalidToken, JwksCache

ISS = "https://iam.test"
AUD = "gpucloud"


class MemoryJwks:
    def __init__(self, keys: list[dict]) -> None:
        self.keys = keys
        self.fetches = 0

    async def fetch(self):
        self.fetches += 1
        return {"keys": list(self.keys)}


def _ed_jwk(private: ed25519.Ed25519PrivateKey, kid: str) -> dict:
    jwk = json.loads(OKPAlgorithm.to_jwk(private.public_key()))
    return {**jwk, "kid": kid, "alg": "EdDSA", "use": "sig"}


def _es_jwk(private: ec.EllipticCurvePrivateKey, kid: str) -> dict:
    jwk = json.loads(ECAlgorithm.to_jwk(private.public_key()))
    return {**jwk, "kid": kid, "alg": "ES256", "use": "sig"}


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _claims(**overrides) -> dict:
    now = int(time.time())
    claims = {
        "iss": ISS,
        "aud": AUD,
        "sub": str(uuid.uuid4()),
        "tenant": str(uuid.uuid4()),
        "roles": ["admin"],
        "amr": ["pwd"],
        "auth_time": now,
        "iat": now,
        "exp": now + 300,
        "jti": uuid.uuid4().hex,
        "kind": "user",
    }
    claims.update(overrides)
    return {k: v for k, v in claims.items() if v is not None}


@pytest.fixture
def ed_key():
    return ed25519.Ed25519PrivateKey.generate()


@pytest.fixture
def source(ed_key):
    return MemoryJwks([_ed_jwk(ed_key, "k1")])


@pytest.fixture
def verifier(source):
    return AccessTokenVerifier(JwksCache(source), issuer=ISS, audience=AUD)


class _Switchable(MemoryJwks):
    """A key source that can be down (`broken`); `attempts` counts fetches tried."""

    def __init__(self, keys, broken: bool = False) -> None:
        super().__init__(keys)
        self.broken, self.attempts = broken, 0

    async def fetch(self):
        self.attempts += 1
        if self.broken:
            raise OSError("down")
        return await super().fetch()


def _sign(key, claims: dict, *, kid: str = "k1", alg: str = "EdDSA", typ: str = "at+jwt") -> str:
    return jwt.encode(claims, key, algorithm=alg, headers={"kid": kid, "typ": typ})


class TestValidToken:
    async def test_a_valid_token_becomes_a_principal(self, verifier, ed_key):
        project = uuid.uuid4()
        claims = _claims(proj={str(project): ["viewer"]}, amr=["pwd", "otp"])
        principal = await verifier.verify(_sign(ed_key, claims))
        assert principal.subject == claims["sub"]
        assert principal.kind == "user"
        assert str(principal.tenant_id) == claims["tenant"]
        assert principal.roles == {"admin"}
        assert principal.roles_in_project(project) == {"admin", "viewer"}
        assert principal.project_ids is None
        assert principal.amr == ("pwd", "otp")

    async def test_a_service_account_is_bound_to_its_project(self, verifier, ed_key):
        project = uuid.uuid4()
        claims = _claims(kind="service_account", roles=[], proj={str(project): ["member"]})
        principal = await verifier.verify(_sign(ed_key, claims))
        assert principal.project_ids == {project}
        principal.require_project(project)
        with pytest.raises(Exception, match="no such resource"):
            principal.require_project(uuid.uuid4())


class TestAudienceList:
    async def test_a_token_for_several_services_is_accepted_by_each(self, verifier, ed_key):
        """iam lists every service's audience when they verify their own (RFC 8725 3.9)."""
        claims = _claims(aud=["gpucloud-billing", AUD])
        principal = await verifier.verify(_sign(ed_key, claims))
        assert principal.subject == claims["sub"]


class TestRejected:
    """Every one of these must be refused with 401 invalid_token."""

    async def _refused(self, verifier, token: str) -> InvalidToken:
        with pytest.raises(InvalidToken) as caught:
            await verifier.verify(token)
        assert caught.value.status == 401
        assert 'error="invalid_token"' in caught.value.headers["WWW-Authenticate"]
        return caught.value

    async def test_alg_none(self, verifier):
        header = _b64(json.dumps({"alg": "none", "typ": "at+jwt", "kid": "k1"}).encode())
        payload = _b64(json.dumps(_claims()).encode())
        await self._refused(verifier, f"{header}.{payload}.")

    async def test_hs256_keyed_with_the_public_key(self, verifier, ed_key, source):
        public_pem = ed_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        raw_public = ed_key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        header = _b64(json.dumps({"alg": "HS256", "typ": "at+jwt", "kid": "k1"}).encode())
        payload = _b64(json.dumps(_claims()).encode())
        signing_input = f"{header}.{payload}".encode()
        for secret in (public_pem, raw_public, json.dumps(source.keys[0]).encode()):
            signature = _b64(hmac.new(secret, signing_input, hashlib.sha256).digest())
            await self._refused(verifier, f"{header}.{payload}.{signature}")

    async def test_an_algorithm_that_is_not_pinned(self, ed_key):
        # ES256 and RS256 keys are published, but the verifier pins EdDSA only.
        es_key = ec.generate_private_key(ec.SECP256R1())
        rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        rsa_jwk = {**json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(rsa_key.public_key()))}
        source = MemoryJwks(
            [
                _ed_jwk(ed_key, "k1"),
                _es_jwk(es_key, "es"),
                {**rsa_jwk, "kid": "rs", "alg": "RS256", "use": "sig"},
            ]
        )
        verifier = AccessTokenVerifier(JwksCache(source), issuer=ISS, audience=AUD)
        await self._refused(verifier, _sign(es_key, _claims(), kid="es", alg="ES256"))
        await self._refused(verifier, _sign(rsa_key, _claims(), kid="rs", alg="RS256"))

    async def test_an_algorithm_that_does_not_match_its_key(self, ed_key):
        # Both algorithms pinned: a token may still only use the one its key was made for.
        es_key = ec.generate_private_key(ec.SECP256R1())
        source = MemoryJwks([_ed_jwk(ed_key, "k1"), _es_jwk(es_key, "es")])
        verifier = AccessTokenVerifier(
            JwksCache(source, algorithms=("EdDSA", "ES256")),
            issuer=ISS,
            audience=AUD,
            algorithms=("EdDSA", "ES256"),
        )
        assert (await verifier.verify(_sign(es_key, _claims(), kid="es", alg="ES256"))).subject
        await self._refused(verifier, _sign(es_key, _claims(), kid="k1", alg="ES256"))

    async def test_symmetric_algorithms_cannot_be_pinned(self, source):
        with pytest.raises(ValueError):
            AccessTokenVerifier(JwksCache(source), issuer=ISS, audience=AUD, algorithms=["HS256"])

    @pytest.mark.parametrize(
        "overrides",
        [
            {"iss": "https://evil.test"},
            {"aud": "someone-else"},
            {"aud": ["gpucloud-billing", "gpucloud-gpuaas"]},  # a list naming other services
            {"exp": int(time.time()) - 60},
            {"nbf": int(time.time()) + 600},
            {"exp": None},
            {"jti": None},
            {"sub": None},
            {"iss": None},
            {"kind": "operator"},
            {"tenant": "not-a-uuid"},
        ],
        ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items()),
    )
    async def test_bad_claims(self, verifier, ed_key, overrides):
        await self._refused(verifier, _sign(ed_key, _claims(**overrides)))

    async def test_expired_and_not_yet_valid_say_so(self, verifier, ed_key):
        expired = await self._refused(verifier, _sign(ed_key, _claims(exp=int(time.time()) - 60)))
        assert "expired" in expired.detail
        early = await self._refused(verifier, _sign(ed_key, _claims(nbf=int(time.time()) + 600)))
        assert "not valid yet" in early.detail

    @pytest.mark.parametrize("typ", ["JWT", "id+jwt", "", "at+JWT-nope"])
    async def test_a_token_that_is_not_an_access_token(self, verifier, ed_key, typ):
        await self._refused(verifier, _sign(ed_key, _claims(), typ=typ))

    async def test_unknown_kid(self, verifier, ed_key):
        await self._refused(verifier, _sign(ed_key, _claims(), kid="nobody"))

    async def test_a_key_not_in_the_jwks_even_with_a_known_kid(self, verifier):
        stranger = ed25519.Ed25519PrivateKey.generate()
        await self._refused(verifier, _sign(stranger, _claims(), kid="k1"))

    async def test_tampered_payload(self, verifier, ed_key):
        token = _sign(ed_key, _claims(roles=["viewer"]))
        header, payload, signature = token.split(".")
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        claims["roles"] = ["owner"]
        forged = _b64(json.dumps(claims).encode())
        await self._refused(verifier, f"{header}.{forged}.{signature}")

    async def test_critical_header(self, verifier, ed_key):
        token = jwt.encode(
            _claims(),
            ed_key,
            algorithm="EdDSA",
            headers={"kid": "k1", "typ": "at+jwt", "crit": ["exp"]},
        )
        await self._refused(verifier, token)

    @pytest.mark.parametrize("garbage", ["", "abc", "a.b.c", "e30.e30.", "🙂.🙂.🙂"])
    async def test_garbage(self, verifier, garbage):
        await self._refused(verifier, garbage)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class TestJwksCache:
    async def test_unknown_kids_refresh_at_most_once_a_minute(self, ed_key):
        source = MemoryJwks([_ed_jwk(ed_key, "k1")])
        clock = Clock()
        cache = JwksCache(source, clock=clock)
        assert await cache.key("k1") is not None
        assert source.fetches == 1
        for _ in range(50):
            assert await cache.key("forged") is None
        assert source.fetches == 1
        clock.now += 61
        assert await cache.key("forged") is None
        assert source.fetches == 2

    async def test_a_rotated_key_is_learned_on_its_first_token(self, ed_key):
        source = MemoryJwks([_ed_jwk(ed_key, "k1")])
        clock = Clock()
        verifier = AccessTokenVerifier(JwksCache(source, clock=clock), issuer=ISS, audience=AUD)
        await verifier.verify(_sign(ed_key, _claims()))
        new_key = ed25519.Ed25519PrivateKey.generate()
        source.keys.append(_ed_jwk(new_key, "k2"))
        clock.now += 61
        assert (await verifier.verify(_sign(new_key, _claims(), kid="k2"))).kind == "user"
        # the retired key still verifies while it is published
        assert (await verifier.verify(_sign(ed_key, _claims()))).kind == "user"

    async def test_keys_published_for_other_uses_or_algorithms_are_ignored(self, ed_key):
        es_key = ec.generate_private_key(ec.SECP256R1())
        source = MemoryJwks(
            [
                {**_ed_jwk(ed_key, "enc"), "use": "enc"},
                {**_es_jwk(es_key, "es"), "alg": "EdDSA"},
                _ed_jwk(ed_key, "k1"),
            ]
        )
        cache = JwksCache(source)
        assert await cache.key("k1") is not None
        assert await cache.key("enc") is None
        assert await cache.key("es") is None

    async def test_an_unreachable_jwks_keeps_the_known_keys(self, ed_key):
        source = _Switchable([_ed_jwk(ed_key, "k1")])
        clock = Clock()
        cache = JwksCache(source, clock=clock)
        assert await cache.key("k1") is not None
        source.broken = True
        clock.now += 400  # stale: a refresh is tried and fails
        assert await cache.key("k1") is not None

    async def test_keys_unavailable_at_start_are_fetched_soon_after_they_appear(self, ed_key):
        """A service that started while iam was down accepts tokens within seconds of iam
        coming back, not after the once-a-minute pace for unknown kids."""

        source = _Switchable([_ed_jwk(ed_key, "k1")], broken=True)
        clock = Clock()
        cache = JwksCache(source, clock=clock)
        with pytest.raises(InvalidToken):
            await cache.key("k1")
        for _ in range(20):  # no tight loop against a down iam: backoff between tries
            assert await cache.key("k1") is None
        assert source.attempts == 1
        source.broken = False
        clock.now += 0.6
        assert await cache.key("k1") is not None
        clock.now += 1
        for _ in range(10):  # healthy again: unknown kids back to once a minute
            assert await cache.key("forged") is None
        assert source.fetches == 1 and source.attempts == 2

    async def test_after_a_long_outage_keys_are_fetched_within_2_s_of_iam_back(self, ed_key):
        """However many fetches failed while iam was down, the retry pace stays at 2 s: a
        valid token is accepted again within seconds of iam answering (chaos bounds it)."""

        source = _Switchable([_ed_jwk(ed_key, "k1")], broken=True)
        clock = Clock()
        cache = JwksCache(source, clock=clock)
        with pytest.raises(InvalidToken):
            await cache.key("k1")
        for _ in range(300):  # ten minutes of iam down, a request every 2 s
            clock.now += 2.0
            with pytest.raises(InvalidToken):
                await cache.key("k1")
        source.broken = False
        clock.now += 2.0
        assert await cache.key("k1") is not None


class TestStepUp:
    def _user(self, amr, auth_time):
        return Principal(subject="u", kind="user", amr=tuple(amr), auth_time=auth_time)

    def test_a_recent_second_factor_passes(self):
        self._user(["pwd", "otp"], int(time.time()) - 10).require_recent_mfa(300)

    @pytest.mark.parametrize(
        ("amr", "age"), [(["pwd"], 10), (["pwd", "otp"], 3600), (["pwd", "otp"], None)]
    )
    def test_no_or_old_second_factor_is_an_rfc9470_challenge(self, amr, age):
        auth_time = None if age is None else int(time.time()) - age
        with pytest.raises(StepUpRequired) as caught:
            self._user(amr, auth_time).require_recent_mfa(300)
        assert caught.value.status == 401
        challenge = caught.value.headers["WWW-Authenticate"]
        assert challenge.startswith("Bearer ")
        assert 'error="insufficient_user_authentication"' in challenge
        assert "max_age=300" in challenge

    def test_service_accounts_cannot_step_up(self):
        sa = Principal(subject="sa", kind="service_account", amr=("otp",), auth_time=0)
        with pytest.raises(Forbidden):
            sa.require_recent_mfa()

    def test_project_roles_add_to_tenant_roles(self):
        project = uuid.uuid4()
        user = Principal(
            subject="u", kind="user", roles=frozenset({"viewer"}),
            project_roles={project: frozenset({"admin"})},
        )  # fmt: skip
        user.require_project_role(project, "admin")
        with pytest.raises(Forbidden):
            user.require_project_role(uuid.uuid4(), "admin")
