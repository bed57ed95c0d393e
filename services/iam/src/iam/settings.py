"""iam's own settings (on top of platformkit's ServiceSettings)."""

import os
from dataclasses import dataclass, field


@dataclass(frozen=True)
class IamSettings:
    # Encrypts the PKCS#8 private signing keys at rest; without it they are stored unencrypted
    # (acceptable for a local devstack only).
    key_passphrase: str | None = field(default=None, repr=False)
    # Every audience the access tokens name (`aud`), when services verify audiences of their
    # own (GPUCLOUD_IAM_TOKEN_AUDIENCES, comma-separated); empty: the one token audience.
    token_audiences: tuple[str, ...] = ()

    @classmethod
    def from_env(cls) -> "IamSettings":
        audiences = os.environ.get("GPUCLOUD_IAM_TOKEN_AUDIENCES", "")
        return cls(
            key_passphrase=os.environ.get("GPUCLOUD_IAM_KEY_PASSPHRASE") or None,
            token_audiences=tuple(a.strip() for a in audiences.split(",") if a.strip()),
        )

    def audience_claim(self, own: str) -> str | list[str]:
        """`aud` of the tokens iam mints: its own audience alone, or the list of every
        service's (always including its own, which iam verifies)."""
        audiences = sorted({own, *self.token_audiences})
        return audiences[0] if len(audiences) == 1 else audiences
