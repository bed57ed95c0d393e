"""Service settings, read once from the environment (GPUCLOUD_* variables).

Secrets (database passwords inside URLs, the Kafka password, the operator token) are held
here but never rendered: `repr()` of the settings masks them, so a logged settings object
leaks nothing.

Two database logins (docs/operations.md, "Database roles"): `database_url` is the runtime
role the service serves with (only the DML it needs), `database_owner_url` the owner that
runs migrations (`python -m <service> migrate`, or `serve` before it serves when
GPUCLOUD_MIGRATE_ON_START is on). Without an owner URL the one login does both (tests,
compose). The migrations grant the runtime role its privileges; its name is
GPUCLOUD_DATABASE_RUNTIME_ROLE, else the user of `database_url` when that differs from the
owner's.
"""

import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlsplit

from platformkit.kafka import KafkaSettings

if TYPE_CHECKING:
    from platformkit.definition import ServiceDefinition

# Where iam's tokens come from and whom they are for. The defaults match the local devstack
# (iam reached through the gateway), so a devstack service needs only GPUCLOUD_JWKS_URL.
DEFAULT_TOKEN_ISSUER = "http://127.0.0.1:8080/v1/iam"
DEFAULT_TOKEN_AUDIENCE = "gpucloud"


# What a service that verifies iam's access tokens needs in production: where iam's keys are
# and which issuer and audience to expect (the devstack defaults are wrong anywhere else).
TOKEN_SETTINGS = ("GPUCLOUD_JWKS_URL", "GPUCLOUD_TOKEN_ISSUER", "GPUCLOUD_TOKEN_AUDIENCE")
# A production Kafka client authenticates as its own principal (docs/operations.md).
KAFKA_SETTINGS = (
    "GPUCLOUD_KAFKA_BOOTSTRAP",
    "GPUCLOUD_KAFKA_SECURITY_PROTOCOL",
    "GPUCLOUD_KAFKA_SASL_MECHANISM",
    "GPUCLOUD_KAFKA_SASL_USERNAME",
    "GPUCLOUD_KAFKA_SASL_PASSWORD",
)
PRODUCTION = "production"


def production_requirements(definition: "ServiceDefinition") -> tuple[str, ...]:
    """Every GPUCLOUD_* variable a production pod of this service must be given: the kit's
    (its database's runtime login, its Kafka principal) and the service's own
    (`ServiceDefinition.required_settings`). tools/deploy/required_settings.py checks the
    rendered Helm chart against this list; `require_production` refuses to start without it."""
    names: list[str] = []
    if definition.migrations:
        names.append("GPUCLOUD_DATABASE_URL")
    if definition.kafka:
        names.extend(KAFKA_SETTINGS)
    names.extend(n for n in definition.required_settings if n not in names)
    return tuple(names)


def missing_settings(required: Iterable[str], environ: Mapping[str, str]) -> list[str]:
    return [name for name in required if not environ.get(name)]


def require_production(required: Sequence[str], environ: Mapping[str, str] | None = None) -> None:
    """In production (GPUCLOUD_ENVIRONMENT=production) refuse to start without a required
    setting, naming every missing one; elsewhere (devstack, tests) the defaults stand."""
    environ = os.environ if environ is None else environ
    if environ.get("GPUCLOUD_ENVIRONMENT", "development") != PRODUCTION:
        return
    missing = missing_settings(required, environ)
    if missing:
        raise SystemExit(
            "GPUCLOUD_ENVIRONMENT=production and these required settings are not set: "
            + ", ".join(missing)
        )


def _env(name: str, default: str | None = None) -> str | None:
    return os.environ.get(f"GPUCLOUD_{name}", default)


def _mask_url(url: str) -> str:
    if "@" not in url or "://" not in url:
        return url
    scheme, rest = url.split("://", 1)
    creds, host = rest.rsplit("@", 1)
    user = creds.split(":", 1)[0]
    return f"{scheme}://{user}:***@{host}"


@dataclass(frozen=True)
class ServiceSettings:
    service_name: str
    version: str = "0.0.0"
    git_sha: str = "unknown"
    http_host: str = "127.0.0.1"
    http_port: int = 8000
    kafka: KafkaSettings = field(default_factory=KafkaSettings)
    database_url: str | None = field(default=None, repr=False)
    database_owner_url: str | None = field(default=None, repr=False)
    database_runtime_role: str | None = None
    heartbeat_interval_s: float = 5.0
    outbox_poll_interval_s: float = 2.0
    consumer_max_attempts: int = 5
    log_format: str = "json"
    log_level: str = "INFO"
    operator_token: str | None = field(default=None, repr=False)
    # Bearer token a Prometheus scrape presents at /metrics (the operator token also works).
    metrics_token: str | None = field(default=None, repr=False)
    # Access-token verification (platformkit.tokens): a verifier is installed when set.
    jwks_url: str | None = None
    token_issuer: str = DEFAULT_TOKEN_ISSUER
    token_audience: str = DEFAULT_TOKEN_AUDIENCE

    @classmethod
    def from_env(cls, service_name: str, version: str = "0.0.0") -> "ServiceSettings":
        return cls(
            service_name=_env("SERVICE_NAME", service_name) or service_name,
            version=version,
            git_sha=_env("GIT_SHA", "unknown") or "unknown",
            http_host=_env("HTTP_HOST", "127.0.0.1") or "127.0.0.1",
            http_port=int(_env("HTTP_PORT", "8000") or 8000),
            kafka=KafkaSettings.from_env(),
            database_url=_env("DATABASE_URL"),
            database_owner_url=_env("DATABASE_OWNER_URL") or None,
            database_runtime_role=_env("DATABASE_RUNTIME_ROLE") or None,
            heartbeat_interval_s=float(_env("HEARTBEAT_INTERVAL_S", "5") or 5),
            outbox_poll_interval_s=float(_env("OUTBOX_POLL_INTERVAL_S", "2") or 2),
            consumer_max_attempts=int(_env("CONSUMER_MAX_ATTEMPTS", "5") or 5),
            log_format=_env("LOG_FORMAT", "json") or "json",
            log_level=_env("LOG_LEVEL", "INFO") or "INFO",
            operator_token=_env("OPERATOR_TOKEN"),
            metrics_token=_env("METRICS_TOKEN") or None,
            jwks_url=_env("JWKS_URL") or None,
            token_issuer=_env("TOKEN_ISSUER") or DEFAULT_TOKEN_ISSUER,
            token_audience=_env("TOKEN_AUDIENCE") or DEFAULT_TOKEN_AUDIENCE,
        )

    @property
    def kafka_bootstrap(self) -> str:
        return self.kafka.bootstrap

    @property
    def database_url_masked(self) -> str:
        return _mask_url(self.database_url or "")

    @property
    def migration_url(self) -> str | None:
        """The login migrations run as: the owner, else the one login there is."""
        return self.database_owner_url or self.database_url

    @property
    def runtime_role(self) -> str | None:
        """The role migrations grant the runtime privileges to; None when one login
        migrates and serves (nothing to grant: it owns everything)."""
        if self.database_runtime_role:
            return self.database_runtime_role
        if not (self.database_owner_url and self.database_url):
            return None
        runtime, owner = _user(self.database_url), _user(self.database_owner_url)
        return runtime if runtime and runtime != owner else None


def _user(url: str) -> str | None:
    user = urlsplit(url).username
    return unquote(user) if user else None
