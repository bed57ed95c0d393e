"""iam's own settings (on top of platformkit's ServiceSettings)."""

import os
from dataclasses import dataclass, field


@dataclass(frozen=True)
class IamSettings:
    # Encrypts the PKCS#8 private signing keys at rest; without it they are stored unencrypted
    # (acceptable for a local devstack only).
    key_passphrase: str | None = field(default=None, repr=False)

    @classmethod
    def from_env(cls) -> "IamSettings":
        return cls(key_passphrase=os.environ.get("GPUCLOUD_IAM_KEY_PASSPHRASE") or None)
