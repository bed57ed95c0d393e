"""iam's own settings (on top of platformkit's ServiceSettings)."""

import os
from dataclasses import dataclass, field


def _networks(value: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in value.split(",") if part.strip())


@dataclass(frozen=True)
class IamSettings:
    # Encrypts the PKCS#8 private signing keys at rest; without it they are stored unencrypted
    # (acceptable for a local devstack only).
    key_passphrase: str | None = field(default=None, repr=False)
    # Every audience the access tokens name (`aud`), when services verify audiences of their
    # own (GPUCLOUD_IAM_TOKEN_AUDIENCES, comma-separated); empty: the one token audience.
    token_audiences: tuple[str, ...] = ()
    # Where verification and invitation messages go (an SMTP relay; devstack: its sink).
    smtp_host: str | None = None
    smtp_port: int = 25
    mail_from: str = "gpucloud <no-reply@gpucloud.localhost>"
    # The base of the links in those messages: the portal's public URL.
    public_url: str = "http://127.0.0.1:8080"
    # The proxies whose X-Forwarded-For entries iam believes (the gateway's addresses), and
    # how many of them stand in front of iam: the client address is the entry that many
    # hops from the right (docs/iam.md, "Sign-in throttling").
    trusted_proxies: tuple[str, ...] = ("127.0.0.0/8", "::1/128")
    proxy_hops: int = 1

    @classmethod
    def from_env(cls) -> "IamSettings":
        env = os.environ
        return cls(
            key_passphrase=env.get("GPUCLOUD_IAM_KEY_PASSPHRASE") or None,
            smtp_host=env.get("GPUCLOUD_SMTP_HOST") or None,
            smtp_port=int(env.get("GPUCLOUD_SMTP_PORT") or 25),
            mail_from=env.get("GPUCLOUD_MAIL_FROM") or cls.mail_from,
            public_url=(env.get("GPUCLOUD_PUBLIC_URL") or cls.public_url).rstrip("/"),
            trusted_proxies=_networks(
                env.get("GPUCLOUD_IAM_TRUSTED_PROXIES", ",".join(cls.trusted_proxies))
            ),
            proxy_hops=int(env.get("GPUCLOUD_IAM_PROXY_HOPS") or 1),
            token_audiences=tuple(
                a.strip()
                for a in env.get("GPUCLOUD_IAM_TOKEN_AUDIENCES", "").split(",")
                if a.strip()
            ),
        )

    def audience_claim(self, own: str) -> str | list[str]:
        """`aud` of the tokens iam mints: its own audience alone, or the list of every
        service's (always including its own, which iam verifies)."""
        audiences = sorted({own, *self.token_audiences})
        return audiences[0] if len(audiences) == 1 else audiences
