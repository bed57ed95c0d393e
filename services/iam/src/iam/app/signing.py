"""iam's signing keys: Ed25519, kept in iam's database, private halves as PKCS#8 encrypted
with GPUCLOUD_IAM_KEY_PASSPHRASE when set. One key is active (signs); a retired key stays
in the JWKS until the last access token it signed has expired (plus a margin).

Private key material never leaves this module: not in a response, an event or a log.
"""

import asyncio
import datetime as dt
import json
import time
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from jwt.algorithms import OKPAlgorithm

from iam.domain.tokens import ACCESS_TOKEN_TTL, ACCESS_TOKEN_TYPE, PUBLISH_MARGIN
from iam.store.credentials import SigningKeyRepository
from platformkit.db import Database
from platformkit.ids import uuid7

ALGORITHM = "EdDSA"


def _new_key(passphrase: bytes | None) -> tuple[str, dict[str, Any], bytes, Ed25519PrivateKey]:
    private = Ed25519PrivateKey.generate()
    kid = uuid7().hex
    jwk = {**json.loads(OKPAlgorithm.to_jwk(private.public_key())), "kid": kid}
    jwk.update({"alg": ALGORITHM, "use": "sig"})
    encryption = (
        serialization.BestAvailableEncryption(passphrase)
        if passphrase
        else serialization.NoEncryption()
    )
    pkcs8 = private.private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, encryption
    )
    return kid, jwk, pkcs8, private


class SigningKeys:
    def __init__(self, db: Database, passphrase: str | None, cache_s: float = 30.0) -> None:
        self.db = db
        self._passphrase = passphrase.encode() if passphrase else None
        self.cache_s = cache_s
        self._active: tuple[str, Ed25519PrivateKey, float] | None = None
        self._lock = asyncio.Lock()

    def __repr__(self) -> str:  # never render key material
        return "SigningKeys(...)"

    async def _load_active(self) -> tuple[str, Ed25519PrivateKey]:
        cached = self._active
        if cached is not None and time.monotonic() - cached[2] < self.cache_s:
            return cached[0], cached[1]
        async with self._lock:
            async with self.db.unit_of_work() as uow:
                repo = SigningKeyRepository(uow)
                row = await repo.active()
                if row is None:
                    kid, jwk, pkcs8, _ = _new_key(self._passphrase)
                    await repo.add_active(kid, jwk, pkcs8, self._passphrase is not None)
                    await uow.commit()
            if row is None:
                async with self.db.unit_of_work() as uow:
                    row = await SigningKeyRepository(uow).active()
            private = serialization.load_der_private_key(
                bytes(row["private_pkcs8"]), self._passphrase if row["encrypted"] else None
            )
            assert isinstance(private, Ed25519PrivateKey)
            self._active = (row["kid"], private, time.monotonic())
            return row["kid"], private

    async def sign(self, claims: dict[str, Any]) -> str:
        kid, private = await self._load_active()
        return jwt.encode(
            claims, private, algorithm=ALGORITHM, headers={"kid": kid, "typ": ACCESS_TOKEN_TYPE}
        )

    async def rotate(self) -> tuple[str, str | None]:
        """A new active key; the old one stays published until its tokens expire."""
        kid, jwk, pkcs8, _ = _new_key(self._passphrase)
        until = dt.datetime.now(dt.UTC) + ACCESS_TOKEN_TTL + PUBLISH_MARGIN
        async with self.db.unit_of_work() as uow:
            repo = SigningKeyRepository(uow)
            retired = await repo.retire_active(until)
            await repo.add_active(kid, jwk, pkcs8, self._passphrase is not None)
            await uow.commit()
        self._active = None
        return kid, retired

    async def jwks(self) -> dict[str, Any]:
        await self._load_active()  # a fresh deployment publishes a key before it signs one
        async with self.db.unit_of_work() as uow:
            rows = await SigningKeyRepository(uow).published()
        return {"keys": [_public(r["public_jwk"]) for r in rows]}

    async def published(self) -> list[Any]:
        async with self.db.unit_of_work() as uow:
            return await SigningKeyRepository(uow).published()


def _public(jwk: Any) -> dict[str, Any]:
    jwk = json.loads(jwk) if isinstance(jwk, str) else dict(jwk)
    # Belt and braces: only public members of an OKP key are ever published.
    return {k: jwk[k] for k in ("kty", "crv", "x", "kid", "alg", "use") if k in jwk}
