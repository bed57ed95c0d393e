"""terminal-gateway's keys, kept in its database so every replica signs with the same
ones and a restart keeps them: an Ed25519 key for session tokens (published as a JWKS the
node agents fetch) and the SSH endpoint's Ed25519 host key. Created on first start; the
private halves are PKCS#8, encrypted with GPUCLOUD_TERMINAL_KEY_PASSPHRASE when it is set
(a warning otherwise). Key rotation is not built yet (docs/terminal.md)."""

from __future__ import annotations

import datetime as dt
import json
import logging
import time
import uuid
from collections.abc import Mapping
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from jwt.algorithms import OKPAlgorithm

from platformkit.db import Database
from platformkit.tokens import AccessTokenVerifier, CallableJwks, JwksCache
from terminal_gateway.domain import tokens
from terminal_gateway.store.repository import KeyRepository

log = logging.getLogger(__name__)
SESSION, SSH_HOST = "session", "ssh_host"


def _serialize(key: Ed25519PrivateKey, passphrase: str | None) -> bytes:
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(passphrase.encode())
        if passphrase
        else serialization.NoEncryption()
    )
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
    )


def _load(pem: bytes, passphrase: str | None, encrypted: bool) -> Ed25519PrivateKey:
    password = passphrase.encode() if encrypted and passphrase else None
    key = serialization.load_pem_private_key(pem, password=password)
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError("terminal-gateway keys are Ed25519")
    return key


class KeyStore:
    def __init__(self, db: Database, issuer: str, passphrase: str | None) -> None:
        self.db = db
        self.issuer = issuer
        self.passphrase = passphrase
        self.signing: dict[str, Ed25519PrivateKey] = {}
        self.active_kid: str | None = None
        self.host_key_pem: bytes = b""
        self.host_public_key = ""  # OpenSSH form: `ssh-ed25519 AAAA...`
        self._verifiers: dict[tuple[str, str], AccessTokenVerifier] = {}
        self._keys = JwksCache(CallableJwks(self._jwks), min_refresh_interval_s=1.0, max_age_s=60.0)

    async def load(self) -> None:
        if not self.passphrase:
            log.warning("GPUCLOUD_TERMINAL_KEY_PASSPHRASE is not set: keys are stored unencrypted")
        async with self.db.unit_of_work() as uow:
            repo = KeyRepository(uow)
            await repo.lock()
            rows = {purpose: await repo.live(purpose) for purpose in (SESSION, SSH_HOST)}
            for purpose, found in rows.items():
                if not found:
                    key = Ed25519PrivateKey.generate()
                    pem = _serialize(key, self.passphrase)
                    kid = uuid.uuid4().hex
                    await repo.add(kid, purpose, pem, bool(self.passphrase), _now())
                    found.append(
                        {"id": kid, "private_key": pem, "encrypted": bool(self.passphrase)}
                    )
            await uow.commit()
        for row in rows[SESSION]:
            self.signing[row["id"]] = _load(
                bytes(row["private_key"]), self.passphrase, row["encrypted"]
            )
            self.active_kid = row["id"]  # the newest
        host = rows[SSH_HOST][-1]
        self.host_key_pem = bytes(host["private_key"])
        public = _load(self.host_key_pem, self.passphrase, host["encrypted"]).public_key()
        self.host_public_key = public.public_bytes(
            serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
        ).decode()

    def jwks(self) -> dict[str, Any]:
        keys = []
        for kid, key in self.signing.items():
            public = json.loads(OKPAlgorithm.to_jwk(key.public_key()))
            keys.append({**public, "kid": kid, "alg": "EdDSA", "use": "sig"})
        return {"keys": keys}

    async def _jwks(self) -> Mapping[str, Any]:
        return self.jwks()

    def sign(self, claims: dict[str, Any], typ: str) -> str:
        assert self.active_kid is not None, "keys are not loaded"
        return jwt.encode(
            claims,
            self.signing[self.active_kid],
            algorithm="EdDSA",
            headers={"kid": self.active_kid, "typ": typ},
        )

    def session_token(self, grant: tokens.SessionGrant, ttl_s: int) -> tuple[str, uuid.UUID, int]:
        """(token, its jti, its expiry in epoch seconds)."""
        jti, now = uuid.uuid4(), int(time.time())
        claims = tokens.session_claims(grant, issuer=self.issuer, jti=jti, now=now, ttl_s=ttl_s)
        return self.sign(claims, tokens.SESSION_TOKEN_TYPE), jti, claims["exp"]

    def relay_assertion(self, node_name: str, session_jti: str) -> str:
        claims = tokens.relay_claims(
            issuer=self.issuer, node_name=node_name, session_jti=session_jti,
            jti=uuid.uuid4(), now=int(time.time()),
        )  # fmt: skip
        return self.sign(claims, tokens.RELAY_TOKEN_TYPE)

    async def verify_session_token(self, token: str, node_name: str) -> dict[str, Any]:
        """The claims of a session token we minted for `node_name` (RFC 8725 checks by the
        kit's verifier: algorithm, typ, iss, aud, exp); InvalidToken otherwise."""
        audience = tokens.node_audience(node_name)
        verifier = self._verifiers.get((audience, tokens.SESSION_TOKEN_TYPE))
        if verifier is None:
            verifier = AccessTokenVerifier(
                self._keys, issuer=self.issuer, audience=audience,
                token_types=(tokens.SESSION_TOKEN_TYPE,),
            )  # fmt: skip
            self._verifiers[(audience, tokens.SESSION_TOKEN_TYPE)] = verifier
        return await verifier.claims(token)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)
