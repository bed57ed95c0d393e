"""Entry point shared by every service: `python -m <service> [serve|migrate]`.

`serve` applies the service's migrations (unless GPUCLOUD_MIGRATE_ON_START=false, as in
Kubernetes where a Job runs them) and serves HTTP with the runtime in its lifespan.
"""

import argparse
import os

import uvicorn

from platformkit.definition import ServiceDefinition
from platformkit.http import build_service_app
from platformkit.migrate import apply_migrations
from platformkit.settings import ServiceSettings
from platformkit.telemetry import configure_logging

KIT_MIGRATIONS = ("kit", "platformkit.migrations")


def migrate(definition: ServiceDefinition, settings: ServiceSettings) -> list[str]:
    if not settings.database_url:
        return []
    packages = [KIT_MIGRATIONS]
    if definition.migrations:
        packages.append((definition.name, definition.migrations))
    return apply_migrations(settings.database_url, packages)


def run(definition: ServiceDefinition, argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=f"python -m {definition.name}")
    parser.add_argument("command", nargs="?", default="serve", choices=["serve", "migrate"])
    args = parser.parse_args(argv)
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
