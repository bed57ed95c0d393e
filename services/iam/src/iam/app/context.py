"""What iam's use cases need besides the database: keys, token settings, throttling, the
box that seals stored secrets, the mailer and the public URL its links point at."""

from dataclasses import dataclass, field

from iam.app.mail import Mailer
from iam.app.secrets import SecretBox
from iam.app.signing import SigningKeys
from iam.app.throttle import LoginThrottle
from platformkit.db import Database


@dataclass
class IamContext:
    db: Database
    keys: SigningKeys
    issuer: str
    audience: str | list[str]  # the `aud` it mints (settings.IamSettings.audience_claim)
    throttle: LoginThrottle = field(default_factory=LoginThrottle)
    # Seals secrets iam reads back (TOTP seeds); see app.secrets.SecretBox.
    box: SecretBox = field(default_factory=lambda: SecretBox(None))
    mailer: Mailer = field(default_factory=lambda: Mailer(None))
    public_url: str = "http://127.0.0.1:8080"
    # Whose X-Forwarded-For is believed, and how many hops (iam.settings.IamSettings).
    trusted_proxies: tuple[str, ...] = ("127.0.0.0/8", "::1/128")
    proxy_hops: int = 1
