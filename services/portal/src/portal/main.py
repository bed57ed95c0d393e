import uvicorn

from platformkit.settings import require_production
from platformkit.telemetry import configure_logging
from portal import __version__
from portal.bootstrap import build_app
from portal.settings import PRODUCTION_SETTINGS, PortalSettings


def main() -> int:
    require_production(PRODUCTION_SETTINGS)
    settings = PortalSettings.from_env(__version__)
    service = settings.service
    configure_logging(service.service_name, service.log_format, service.log_level)
    uvicorn.run(
        build_app(settings),
        host=service.http_host,
        port=service.http_port,
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=5,
    )
    return 0
