"""The caller's SSH public keys: `/v1/iam/me/ssh-keys` (users only). Adding one is a
step-up operation (a new credential); revoking is not."""

import datetime as dt
import uuid
from typing import Annotated

import msgspec
from litestar import Controller, delete, get, post
from litestar.openapi.datastructures import ResponseSpec

from iam.api.authorization import guarded
from iam.app import ssh_keys
from iam.domain.permissions import Action
from iam.domain.ssh_keys import MAX_NAME
from platformkit.auth import Principal
from platformkit.db import Database
from platformkit.errors import PROBLEM_JSON, Problem


class SshKeyCreate(msgspec.Struct, forbid_unknown_fields=True):
    public_key: Annotated[
        str,
        msgspec.Meta(
            min_length=1,
            max_length=16384,
            description="An OpenSSH public key line: `ssh-ed25519 AAAA... [comment]` or an"
            " `ssh-rsa` key of at least 3072 bits",
        ),
    ]
    name: Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_NAME)] | None = None


class SshKeyOut(msgspec.Struct, omit_defaults=True):
    id: uuid.UUID
    name: str
    algorithm: str
    bits: int
    fingerprint: Annotated[
        str, msgspec.Meta(description="`SHA256:...`, as `ssh-keygen -l` prints it")
    ]
    public_key: str
    created_at: dt.datetime
    revoked_at: dt.datetime | None = None


def _out(key: ssh_keys.SshKey) -> SshKeyOut:
    return SshKeyOut(
        id=key.id, name=key.name, algorithm=key.algorithm, bits=key.bits,
        fingerprint=key.fingerprint, public_key=key.public_key, created_at=key.created_at,
        revoked_at=key.revoked_at,
    )  # fmt: skip


_CONFLICT = ResponseSpec(
    Problem, description="The key is already registered", media_type=PROBLEM_JSON,
    generate_examples=False,
)  # fmt: skip


class SshKeyController(Controller):
    path = "/v1/iam/me/ssh-keys"
    tags = ["ssh-keys"]

    @get("/", operation_id="listSshKeys", **guarded(Action.AUTHENTICATED))
    async def index(self, db: Database, principal: Principal) -> list[SshKeyOut]:
        """The caller's SSH keys, revoked ones included (newest last)."""
        return [_out(k) for k in await ssh_keys.list_keys(db, principal)]

    @post("/", operation_id="addSshKey", status_code=201, responses={409: _CONFLICT},
          **guarded(Action.AUTHENTICATED))  # fmt: skip
    async def create(self, data: SshKeyCreate, db: Database, principal: Principal) -> SshKeyOut:
        """Register a public key for `ssh <allocation id>@<terminal host>`; needs a second
        factor used within 10 minutes (401 insufficient_user_authentication otherwise)."""
        return _out(await ssh_keys.add_key(db, principal, data.public_key, data.name))

    @delete("/{key_id:uuid}", operation_id="revokeSshKey", **guarded(Action.AUTHENTICATED))
    async def revoke(self, key_id: uuid.UUID, db: Database, principal: Principal) -> None:
        """Revoke one of the caller's keys: new `ssh` logins with it are refused at once
        (terminal-gateway learns it from `iam.ssh-key.revoked`)."""
        await ssh_keys.revoke_key(db, principal, key_id)
