"""Wires iam together: routes, migrations, the signing keys and iam's own token verifier."""

import logging

from litestar import Litestar
from litestar.di import Provide

from iam import SERVICE, __version__
from iam.api.authorization import provide_authorized_principal
from iam.api.routes import ROUTES
from iam.app.context import IamContext
from iam.app.mail import Mailer
from iam.app.secrets import SecretBox
from iam.app.signing import SigningKeys
from iam.settings import IamSettings
from platformkit.definition import ServiceDefinition
from platformkit.http import build_service_app
from platformkit.settings import ServiceSettings
from platformkit.tokens import AccessTokenVerifier, CallableJwks, JwksCache

log = logging.getLogger(__name__)


async def install_iam(app: Litestar) -> None:
    """iam signs tokens with keys from its database and verifies them from the same keys
    (no HTTP call to itself). Its own key set is cheap to re-read, so an unknown kid may
    refresh it once a second rather than once a minute."""
    settings: ServiceSettings = app.state.settings
    runtime = app.state.runtime
    if runtime.db is None:
        log.warning("iam runs without a database: tokens are unavailable")
        return
    iam_settings = IamSettings.from_env()
    if not iam_settings.key_passphrase:
        log.warning(
            "GPUCLOUD_IAM_KEY_PASSPHRASE is not set: signing keys and TOTP secrets are stored"
            " unencrypted"
        )
    keys = SigningKeys(runtime.db, iam_settings.key_passphrase)
    app.state.iam = IamContext(
        db=runtime.db,
        keys=keys,
        issuer=settings.token_issuer,
        audience=iam_settings.audience_claim(settings.token_audience),
        box=SecretBox(iam_settings.key_passphrase),
        mailer=Mailer(iam_settings.smtp_host, iam_settings.smtp_port, iam_settings.mail_from),
        public_url=iam_settings.public_url,
        trusted_proxies=iam_settings.trusted_proxies,
        proxy_hops=iam_settings.proxy_hops,
    )
    if not iam_settings.smtp_host:
        log.warning("GPUCLOUD_SMTP_HOST is not set: verification and invitation mail is not sent")
    app.state.token_verifier = AccessTokenVerifier(
        JwksCache(CallableJwks(keys.jwks), min_refresh_interval_s=1.0, max_age_s=60.0),
        issuer=settings.token_issuer,
        audience=settings.token_audience,
        # Service-account tokens of revoked keys are refused here too (fed by Kafka).
        revocations=runtime.revocations,
        # ... and roles revoked since the token was minted stop counting (fed by Kafka).
        memberships=runtime.memberships,
    )


DEFINITION = ServiceDefinition(
    name=SERVICE,
    version=__version__,
    description="Identity and access: tenants, projects, members, service accounts, tokens.",
    route_handlers=ROUTES,
    migrations="iam.store.migrations",
    dependencies={"principal": Provide(provide_authorized_principal)},
    on_startup=[install_iam],
    # iam verifies its tokens with its own keys (no JWKS URL); it seals them at rest; it
    # mails verification and invitation links (relay, the links' base); it reads the client
    # address from the X-Forwarded-For of the proxies it trusts (docs/iam.md).
    required_settings=(
        "GPUCLOUD_TOKEN_ISSUER",
        "GPUCLOUD_TOKEN_AUDIENCE",
        "GPUCLOUD_IAM_KEY_PASSPHRASE",
        "GPUCLOUD_SMTP_HOST",
        "GPUCLOUD_PUBLIC_URL",
        "GPUCLOUD_IAM_TRUSTED_PROXIES",
        "GPUCLOUD_IAM_PROXY_HOPS",
    ),
)


def build_app(settings: ServiceSettings | None = None) -> Litestar:
    return build_service_app(DEFINITION, settings)
