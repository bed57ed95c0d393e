"""appplatform's signing keys for app-proxy tokens, kept in its database so every replica
signs with the same ones and a restart keeps them (the pattern of terminal-gateway's
session-token keys). Created on first start; the private halves are PKCS#8, encrypted with
GPUCLOUD_APPS_KEY_PASSPHRASE when it is set (a warning otherwise). Rotation: not built."""

from __future__ import annotations

import datetime as dt
import json
import logging
import time
import uuid
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from jwt.algorithms import OKPAlgorithm

from appplatform.domain import proxy_tokens
from appplatform.store import repository as repo
from platformkit.db import Database

log = logging.getLogger(__name__)


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
    key = serialization.load_pem_private_key(
        pem, password=passphrase.encode() if encrypted and passphrase else None
    )
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError("appplatform's keys are Ed25519")
    return key


class KeyStore:
    def __init__(self, db: Database, passphrase: str | None) -> None:
        self.db = db
        self.passphrase = passphrase
        self.signing: dict[str, Ed25519PrivateKey] = {}
        self.active_kid: str | None = None

    async def load(self) -> None:
        if not self.passphrase:
            log.warning("GPUCLOUD_APPS_KEY_PASSPHRASE is not set: keys are stored unencrypted")
        async with self.db.unit_of_work() as uow:
            await repo.lock_keys(uow)
            rows = await repo.live_keys(uow)
            if not rows:
                kid = uuid.uuid4().hex
                pem = _serialize(Ed25519PrivateKey.generate(), self.passphrase)
                await repo.add_key(uow, kid, pem, bool(self.passphrase), dt.datetime.now(dt.UTC))
                rows = [{"id": kid, "private_key": pem, "encrypted": bool(self.passphrase)}]
            await uow.commit()
        for row in rows:
            self.signing[row["id"]] = _load(
                bytes(row["private_key"]), self.passphrase, row["encrypted"]
            )
            self.active_kid = row["id"]  # the newest

    def jwks(self) -> dict[str, Any]:
        keys = []
        for kid, key in self.signing.items():
            public = json.loads(OKPAlgorithm.to_jwk(key.public_key()))
            keys.append({**public, "kid": kid, "alg": "EdDSA", "use": "sig"})
        return {"keys": keys}

    def proxy_token(
        self, *, node_name: str, allocation_id: uuid.UUID, port: int, scope: str, subject: str
    ) -> str:
        assert self.active_kid is not None, "keys are not loaded"
        claims = proxy_tokens.proxy_claims(
            node_name=node_name, allocation_id=allocation_id, port=port, scope=scope,
            subject=subject, jti=uuid.uuid4(), now=int(time.time()),
        )  # fmt: skip
        return jwt.encode(
            claims,
            self.signing[self.active_kid],
            algorithm="EdDSA",
            headers={"kid": self.active_kid, "typ": proxy_tokens.TOKEN_TYPE},
        )
