"""appplatform's own settings (beyond the kit's), from the environment."""

from __future__ import annotations

import dataclasses
import os


@dataclasses.dataclass(frozen=True)
class AppSettings:
    # Seals the app-proxy signing keys at rest (unencrypted, with a warning, when unset).
    key_passphrase: str | None = None
    # How long the port proxy waits for a node agent's answer to start.
    agent_timeout_s: float = 30.0

    @classmethod
    def from_env(cls) -> AppSettings:
        return cls(
            key_passphrase=os.environ.get("GPUCLOUD_APPS_KEY_PASSPHRASE") or None,
            agent_timeout_s=float(os.environ.get("GPUCLOUD_APPS_AGENT_TIMEOUT_S", "30")),
        )
