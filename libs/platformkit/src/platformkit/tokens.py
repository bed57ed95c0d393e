"""Verification of iam's access tokens, per RFC 8725 (JWT best current practices).

- The algorithm is pinned (EdDSA by default): the header's `alg` must be one we accept
  AND the one the key was published for, so `none`, HS256 keyed with the public key, and
  any other algorithm are refused before a signature is looked at.
- `typ` must be `at+jwt` (RFC 9068), so an ID token or another JWT cannot pass as an
  access token; `crit` headers are refused (we understand none); `jku`/`jwk`/`x5u` are
  ignored: keys come only from iam's JWKS.
- `iss`, `aud`, `exp`, `iat`, `sub` and `jti` are required; `nbf` is honoured when present.
- Keys come from iam's JWKS (`GPUCLOUD_JWKS_URL`), cached; an unknown `kid` triggers a
  refresh at most once a minute (so a flood of forged kids cannot hammer iam), and the
  whole set is refreshed when older than five minutes (to learn about retired keys).

A token minted from an API key carries its id (`api_key`); with a revocation set attached
(`platformkit.revocations`, started by the service runtime) a revoked key's tokens are
refused before they expire. With a membership projection attached
(`platformkit.memberships`, also started by the runtime) a user's roles are intersected
with the memberships iam has published since: a role revoked after the token was minted no
longer counts, a role granted since is not added.

The result is a `platformkit.auth.Principal`. Tokens are never logged.
"""

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Protocol

import httpx
import jwt
from jwt import PyJWK

from platformkit.auth import Principal
from platformkit.errors import Unauthorized

ACCESS_TOKEN_TYPE = "at+jwt"
DEFAULT_ALGORITHMS = ("EdDSA",)
# Key types each pinned algorithm may be used with: a key published for one algorithm is
# never used with another.
_KEY_TYPES = {"EdDSA": ("OKP", "Ed25519"), "ES256": ("EC", "P-256")}
_REQUIRED_CLAIMS = ["exp", "iat", "iss", "aud", "sub", "jti"]


class InvalidToken(Unauthorized):
    """RFC 6750 `invalid_token`: expired, forged, for someone else, or unreadable."""

    slug, title = "invalid-token", "Invalid access token"

    def __init__(self, detail: str = "the access token is not valid") -> None:
        super().__init__(
            detail,
            headers={
                "WWW-Authenticate": 'Bearer realm="gpucloud", error="invalid_token", '
                f'error_description="{detail}"'
            },
        )


class KeySource(Protocol):
    async def fetch(self) -> Mapping[str, Any]:
        """The current JWKS document ({"keys": [...]})."""
        ...


class HttpJwks:
    """iam's JWKS over HTTP."""

    def __init__(self, url: str, timeout_s: float = 3.0) -> None:
        self.url = url
        self.timeout_s = timeout_s

    async def fetch(self) -> Mapping[str, Any]:
        async with httpx.AsyncClient(timeout=self.timeout_s) as client:
            response = await client.get(self.url)
            response.raise_for_status()
            return response.json()


class CallableJwks:
    """A JWKS from any coroutine (iam reads its own keys from its database)."""

    def __init__(self, fetch: Callable[[], Awaitable[Mapping[str, Any]]]) -> None:
        self._fetch = fetch

    async def fetch(self) -> Mapping[str, Any]:
        return await self._fetch()


# After a failed fetch the next is tried at most this long after (0.5 s, 1 s, 2 s, 2 s ...):
# a service whose keys are missing or stale accepts tokens again within ~2 s of iam being
# back, however long iam was down (issue 19: valid callers refused no longer than 5 s).
FAILED_FETCH_RETRY_MAX_S = 2.0


class JwksCache:
    def __init__(
        self,
        source: KeySource,
        *,
        algorithms: Sequence[str] = DEFAULT_ALGORITHMS,
        min_refresh_interval_s: float = 60.0,
        max_age_s: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.source = source
        self.algorithms = tuple(algorithms)
        self.min_refresh_interval_s = min_refresh_interval_s
        self.max_age_s = max_age_s
        self.clock = clock
        self.keys: dict[str, PyJWK] = {}
        self.fetched_at: float | None = None
        self.refreshes = 0
        self._attempted_at: float | None = None
        self._failures = 0
        self._retry_at: float | None = None  # set while fetches fail
        self._lock = asyncio.Lock()

    async def key(self, kid: str) -> PyJWK | None:
        now = self.clock()
        stale = self.fetched_at is None or now - self.fetched_at >= self.max_age_s
        if self._retry_at is not None:
            # The last fetch failed (iam down, or not up yet when this service started):
            # try again on a short backoff rather than the once-a-minute pace for unknown
            # kids, or every token would be refused for a minute after iam comes back.
            if (stale or kid not in self.keys) and now >= self._retry_at:
                await self._refresh(now)
            return self.keys.get(kid)
        unknown_may_refresh = kid not in self.keys and (
            self.fetched_at is None or now - self.fetched_at >= self.min_refresh_interval_s
        )
        if stale or unknown_may_refresh:
            await self._refresh(now)
        return self.keys.get(kid)

    def invalidate(self) -> None:
        """Forget the fetch time so the next lookup refreshes (the key owner rotated)."""
        self.fetched_at = None

    async def _refresh(self, asked_at: float) -> None:
        async with self._lock:
            if self._attempted_at is not None and self._attempted_at >= asked_at:
                return  # another caller tried while we waited
            self._attempted_at = self.clock()
            try:
                document = await self.source.fetch()
            except Exception:
                # Keep serving the keys we have; retry after 0.5 s, 1 s, then every 2 s
                # (failures are cheap to retry, never a tight loop).
                self._failures += 1
                backoff = min(
                    0.5 * 2 ** min(self._failures - 1, 16),
                    FAILED_FETCH_RETRY_MAX_S,
                    self.min_refresh_interval_s,
                )
                self._retry_at = self.clock() + backoff
                if not self.keys:
                    raise InvalidToken("signing keys are unavailable") from None
                return
            self.keys = self._parse(document)
            self.fetched_at = self.clock()
            self._failures, self._retry_at = 0, None
            self.refreshes += 1

    def _parse(self, document: Mapping[str, Any]) -> dict[str, PyJWK]:
        keys: dict[str, PyJWK] = {}
        for entry in document.get("keys", []):
            alg, kid = entry.get("alg"), entry.get("kid")
            if alg not in self.algorithms or not isinstance(kid, str):
                continue
            if (entry.get("kty"), entry.get("crv")) != _KEY_TYPES.get(alg):
                continue
            if entry.get("use", "sig") != "sig":
                continue
            try:
                keys[kid] = PyJWK(entry, algorithm=alg)
            except jwt.PyJWTError:
                continue
        return keys


class RevocationCheck(Protocol):
    def is_revoked(self, key_id: str) -> bool: ...


class MembershipCheck(Protocol):
    def restrict(self, principal: Principal) -> Principal: ...


class AccessTokenVerifier:
    """Verifies an access token and turns its claims into a Principal."""

    def __init__(
        self,
        keys: JwksCache,
        *,
        issuer: str,
        audience: str,
        algorithms: Sequence[str] = DEFAULT_ALGORITHMS,
        leeway_s: float = 5.0,
        revocations: RevocationCheck | None = None,
        memberships: MembershipCheck | None = None,
        token_types: Sequence[str] = (ACCESS_TOKEN_TYPE, "application/" + ACCESS_TOKEN_TYPE),
    ) -> None:
        unknown = set(algorithms) - set(_KEY_TYPES)
        if not algorithms or unknown:
            raise ValueError(f"only asymmetric algorithms {sorted(_KEY_TYPES)} can be pinned")
        self.keys = keys
        self.issuer = issuer
        self.audience = audience
        self.algorithms = tuple(algorithms)
        self.leeway_s = leeway_s
        self.revocations = revocations
        self.memberships = memberships
        # Other short-lived JWTs (terminal-gateway's session tokens) reuse this verifier
        # with their own explicit `typ`, so one kind of token never passes as another.
        self.token_types = tuple(t.lower() for t in token_types)

    async def claims(self, token: str) -> dict[str, Any]:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise InvalidToken("the access token is not a JWT") from None
        alg = header.get("alg")
        if alg not in self.algorithms:
            raise InvalidToken("the token's algorithm is not accepted")
        if str(header.get("typ", "")).lower() not in self.token_types:
            raise InvalidToken("the token is not an access token")
        if "crit" in header:
            raise InvalidToken("the token has critical headers")
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise InvalidToken("the token names no key")
        key = await self.keys.key(kid)
        if key is None:
            raise InvalidToken("the token's key is unknown")
        if key.algorithm_name != alg:
            raise InvalidToken("the token's algorithm does not match its key")
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key=key.key,
                algorithms=[alg],
                audience=self.audience,
                issuer=self.issuer,
                leeway=self.leeway_s,
                options={"require": _REQUIRED_CLAIMS},
            )
        except jwt.ExpiredSignatureError:
            raise InvalidToken("the access token has expired") from None
        except jwt.ImmatureSignatureError:
            raise InvalidToken("the access token is not valid yet") from None
        except jwt.PyJWTError:
            raise InvalidToken() from None
        api_key = claims.get("api_key")
        if api_key is not None and self.revocations is not None:
            if self.revocations.is_revoked(str(api_key)):
                raise InvalidToken("the API key this token was minted from is revoked")
        return claims

    async def verify(self, token: str) -> Principal:
        principal = principal_from_claims(await self.claims(token))
        if self.memberships is not None:
            # Roles revoked since the token was minted stop counting (never more than it says).
            principal = self.memberships.restrict(principal)
        return principal


def principal_from_claims(claims: Mapping[str, Any]) -> Principal:
    """The claims iam writes (docs/iam.md#token-claims) as a Principal."""
    try:
        kind = claims.get("kind", "user")
        if kind not in ("user", "service_account"):
            raise ValueError(kind)
        tenant = claims.get("tenant")
        project_roles = {
            uuid.UUID(project): frozenset(str(r) for r in roles)
            for project, roles in (claims.get("proj") or {}).items()
        }
        auth_time = claims.get("auth_time")
        return Principal(
            subject=str(claims["sub"]),
            kind=kind,
            tenant_id=uuid.UUID(tenant) if tenant else None,
            roles=frozenset(str(r) for r in claims.get("roles") or ()),
            # A service account reaches only the project(s) it was made for.
            project_ids=frozenset(project_roles) if kind == "service_account" else None,
            amr=tuple(str(m) for m in claims.get("amr") or ()),
            auth_time=int(auth_time) if auth_time is not None else None,
            project_roles=project_roles,
            token_id=str(claims.get("jti")),
            api_key_id=str(claims["api_key"]) if claims.get("api_key") else None,
        )
    except (KeyError, ValueError, TypeError, AttributeError):
        raise InvalidToken("the token's claims are malformed") from None


def verifier_from_settings(
    jwks_url: str, *, issuer: str, audience: str, algorithms: Sequence[str] = DEFAULT_ALGORITHMS
) -> AccessTokenVerifier:
    return AccessTokenVerifier(
        JwksCache(HttpJwks(jwks_url), algorithms=algorithms),
        issuer=issuer,
        audience=audience,
        algorithms=algorithms,
    )
