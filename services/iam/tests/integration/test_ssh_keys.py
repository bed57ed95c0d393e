"""SSH keys through iam's routes (real PostgreSQL): add with step-up, list with
fingerprints, one key per user, revoke, the events terminal-gateway projects."""

import json
import uuid

import psycopg
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from .conftest import access, bearer, sign_up

pytestmark = pytest.mark.integration
KEYS = "/v1/iam/me/ssh-keys"


def _public(key) -> str:
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
        .decode()
    )


def _events(database: str, user_id: str) -> list[tuple[str, dict]]:
    with psycopg.connect(database) as conn:
        rows = conn.execute(
            "SELECT type, convert_from(payload, 'UTF8') FROM outbox WHERE topic = 'iam.ssh-key.v1'"
            " AND subject = %s ORDER BY seq",
            (user_id,),
        ).fetchall()
    return [(t, json.loads(p)) for t, p in rows]


async def test_a_user_adds_lists_and_revokes_a_key(client, iam_database):
    account = await sign_up(client)
    user_id = account["user"]["id"]
    password_only = bearer(await access(client, account["email"]))
    key = _public(ed25519.Ed25519PrivateKey.generate())

    needs_mfa = await client.post(KEYS, json={"public_key": key}, headers=password_only)
    assert needs_mfa.status_code == 401
    assert "insufficient_user_authentication" in needs_mfa.headers["www-authenticate"]

    headers = bearer(await access(client, account["email"], mfa=True))
    added = await client.post(KEYS, json={"public_key": key + " laptop"}, headers=headers)
    assert added.status_code == 201, added.text
    body = added.json()
    assert body["name"] == "laptop" and body["algorithm"] == "ssh-ed25519" and body["bits"] == 256
    assert body["fingerprint"].startswith("SHA256:") and body["public_key"] == key

    listed = await client.get(KEYS, headers=password_only)  # reading needs no step-up
    assert [k["fingerprint"] for k in listed.json()] == [body["fingerprint"]]

    revoked = await client.delete(f"{KEYS}/{body['id']}", headers=password_only)
    assert revoked.status_code == 204
    assert (await client.delete(f"{KEYS}/{body['id']}", headers=password_only)).status_code == 204
    assert (await client.get(KEYS, headers=headers)).json()[0]["revoked_at"]

    events = _events(iam_database, user_id)
    assert [t for t, _ in events] == ["iam.ssh-key.added", "iam.ssh-key.revoked"]
    assert events[0][1]["public_key"] == key and events[0][1]["fingerprint"] == body["fingerprint"]
    # Once revoked, the same key may be registered again.
    again = await client.post(KEYS, json={"public_key": key}, headers=headers)
    assert again.status_code == 201


async def test_one_key_belongs_to_one_user_and_weak_keys_are_refused(client):
    first, second = await sign_up(client), await sign_up(client)
    key = _public(ed25519.Ed25519PrivateKey.generate())
    alice = bearer(await access(client, first["email"], mfa=True))
    bob = bearer(await access(client, second["email"], mfa=True))
    assert (await client.post(KEYS, json={"public_key": key}, headers=alice)).status_code == 201
    taken = await client.post(KEYS, json={"public_key": key}, headers=bob)
    assert taken.status_code == 409

    weak = _public(rsa.generate_private_key(public_exponent=65537, key_size=2048))
    refused = await client.post(KEYS, json={"public_key": weak}, headers=bob)
    assert refused.status_code == 422
    assert refused.json()["errors"][0]["field"] == "public_key"
    assert "3072" in refused.json()["errors"][0]["message"]

    # Bob cannot see or revoke Alice's key.
    [alices] = (await client.get(KEYS, headers=alice)).json()
    assert (await client.get(KEYS, headers=bob)).json() == []
    assert (await client.delete(f"{KEYS}/{alices['id']}", headers=bob)).status_code == 404
    assert (await client.delete(f"{KEYS}/{uuid.uuid4()}", headers=bob)).status_code == 404
