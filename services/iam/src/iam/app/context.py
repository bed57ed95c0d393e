"""What iam's use cases need besides the database: keys, token settings, throttling, the
box that seals stored secrets."""

from dataclasses import dataclass, field

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
