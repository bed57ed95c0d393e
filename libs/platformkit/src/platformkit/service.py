"""Entry point shared by every service: `python -m <service> [serve|migrate]`.

`serve` applies the service's migrations (unless GPUCLOUD_MIGRATE_ON_START=false, as in
Kubernetes where a Job runs them) and serves HTTP with the runtime in its lifespan.
Migrations connect as the owner (GPUCLOUD_DATABASE_OWNER_URL, else the one
GPUCLOUD_DATABASE_URL); the service then serves with GPUCLOUD_DATABASE_URL, its runtime role.
"""

import argparse
import os

import uvicorn

from platformkit.definition import ServiceDefinition
from platformkit.http import build_service_app
from platformkit.migrate import apply_migrations
from platformkit.settings import ServiceSettings, production_requirements, require_production
from platformkit.telemetry import configure_logging

KIT_MIGRATIONS = ("kit", "platformkit.migrations")


def migrate(definition: ServiceDefinition, settings: ServiceSettings) -> list[str]:
    url = settings.migration_url
    if not url:
        return []
    if settings.database_owner_url and not settings.runtime_role:
        raise SystemExit(
            "GPUCLOUD_DATABASE_OWNER_URL is set but no runtime role to grant to: set "
            "GPUCLOUD_DATABASE_RUNTIME_ROLE (or a GPUCLOUD_DATABASE_URL of another login)"
        )
    packages = [KIT_MIGRATIONS]
    if definition.migrations:
        packages.append((definition.name, definition.migrations))
    return apply_migrations(url, packages, runtime_role=settings.runtime_role)


def run(definition: ServiceDefinition, argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=f"python -m {definition.name}")
    parser.add_argument("command", nargs="?", default="serve", choices=["serve", "migrate"])
    args = parser.parse_args(argv)
    if args.command == "serve":
        require_production(production_requirements(definition))
    settings = ServiceSettings.from_env(definition.name, definition.version)
    configure_logging(settings.service_name, settings.log_format, settings.log_level)
    if args.command == "migrate" or os.environ.get("GPUCLOUD_MIGRATE_ON_START", "true") != "false":
        migrate(definition, settings)
    if args.command == "migrate":
        return 0
    app = build_service_app(definition, settings)
    uvicorn.run(
        app,
        host=settings.http_host,
        port=settings.http_port,
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=5,
    )
    return 0
