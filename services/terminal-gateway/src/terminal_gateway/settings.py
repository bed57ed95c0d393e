"""terminal-gateway's own settings (GPUCLOUD_TERMINAL_*), read once at start."""

from __future__ import annotations

import dataclasses
import os
from urllib.parse import urlsplit


@dataclasses.dataclass(frozen=True)
class TerminalSettings:
    # Where clients reach the connect route: the gateway's URL, as ws:// or wss://.
    public_url: str = "ws://127.0.0.1:8080"
    issuer: str = "terminal-gateway"
    token_ttl_s: int = 60
    grace_s: int = 300
    idle_timeout_s: int = 3600
    mfa_max_age_s: int = 600
    relay_lease_s: float = 15.0
    sweep_interval_s: float = 1.0
    ssh_host: str = "127.0.0.1"
    ssh_port: int = 0  # 0: no SSH endpoint
    # Where users reach the SSH endpoint (`GET /v1/terminal/ssh`, `gpucloud ssh`): by default
    # the host of `public_url` and `ssh_port`; set them when a load balancer maps it elsewhere.
    ssh_public_host: str = ""
    ssh_public_port: int = 0
    key_passphrase: str | None = dataclasses.field(default=None, repr=False)

    @classmethod
    def from_env(cls) -> TerminalSettings:
        env = os.environ.get
        settings = cls(
            public_url=(env("GPUCLOUD_TERMINAL_PUBLIC_URL") or cls.public_url).rstrip("/"),
            issuer=env("GPUCLOUD_TERMINAL_TOKEN_ISSUER") or cls.issuer,
            token_ttl_s=int(env("GPUCLOUD_TERMINAL_TOKEN_TTL_S") or cls.token_ttl_s),
            grace_s=int(env("GPUCLOUD_TERMINAL_GRACE_S") or cls.grace_s),
            idle_timeout_s=int(env("GPUCLOUD_TERMINAL_IDLE_TIMEOUT_S") or cls.idle_timeout_s),
            mfa_max_age_s=int(env("GPUCLOUD_TERMINAL_MFA_MAX_AGE_S") or cls.mfa_max_age_s),
            relay_lease_s=float(env("GPUCLOUD_TERMINAL_RELAY_LEASE_S") or cls.relay_lease_s),
            sweep_interval_s=float(
                env("GPUCLOUD_TERMINAL_SWEEP_INTERVAL_S") or cls.sweep_interval_s
            ),
            ssh_host=env("GPUCLOUD_TERMINAL_SSH_HOST") or env("GPUCLOUD_HTTP_HOST") or cls.ssh_host,
            ssh_port=int(env("GPUCLOUD_TERMINAL_SSH_PORT") or 0),
            ssh_public_host=env("GPUCLOUD_TERMINAL_SSH_PUBLIC_HOST") or "",
            ssh_public_port=int(env("GPUCLOUD_TERMINAL_SSH_PUBLIC_PORT") or 0),
            key_passphrase=env("GPUCLOUD_TERMINAL_KEY_PASSPHRASE") or None,
        )
        settings.check()
        return settings

    def ssh_endpoint(self) -> tuple[str, int] | None:
        """(host, port) users connect `ssh` to; None without an SSH endpoint."""
        if not self.ssh_port:
            return None
        host = self.ssh_public_host or (urlsplit(self.public_url).hostname or self.ssh_host)
        return host, self.ssh_public_port or self.ssh_port

    def check(self) -> None:
        if not 1 <= self.token_ttl_s <= 60:
            raise ValueError("GPUCLOUD_TERMINAL_TOKEN_TTL_S must be 1 to 60 seconds")
        if not self.public_url.startswith(("ws://", "wss://")):
            raise ValueError("GPUCLOUD_TERMINAL_PUBLIC_URL must be a ws:// or wss:// URL")
        if self.grace_s < 0 or self.idle_timeout_s < 0:
            raise ValueError("grace and idle timeout must not be negative")
