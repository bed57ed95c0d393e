"""Wires registry together: routes, migrations, the project projection, the audit log's
witness, the OCI registry client."""

from litestar import Litestar

from gpucloud_contracts.catalog import Topic
from platformkit.consumers import Subscription
from platformkit.definition import ServiceDefinition
from platformkit.http import build_service_app
from platformkit.settings import TOKEN_SETTINGS
from registry import __version__
from registry.api.routes import ROUTES
from registry.app.evidence import evidence_handler
from registry.app.projects import project_handler
from registry.app.witness import witness_handler
from registry.oci import OciClient
from registry.settings import RegistrySettings

SETTINGS = RegistrySettings.from_env()


async def open_blob_store(app: Litestar) -> None:
    """The OCI registry client (GPUCLOUD_REGISTRY_OCI_URL); without one, blob routes 503."""
    settings: RegistrySettings = getattr(app.state, "registry_settings", None) or SETTINGS
    app.state.registry_settings = settings
    url = settings.oci_url or "http://127.0.0.1:15000"
    app.state.oci = OciClient(url, settings.oci_username, settings.oci_password)


async def close_blob_store(app: Litestar) -> None:
    await app.state.oci.close()


DEFINITION = ServiceDefinition(
    name="registry",
    version=__version__,
    # the blobs live in an external OCI registry (docs/registry.md)
    required_settings=(*TOKEN_SETTINGS, "GPUCLOUD_REGISTRY_OCI_URL"),
    description="Registry and trust: apps, versions, artifacts, signatures, promotions.",
    route_handlers=ROUTES,
    migrations="registry.store.migrations",
    subscriptions=[
        Subscription("projects", (Topic.IAM_PROJECT_V1,), project_handler()),
        Subscription(
            "witness", (Topic.AUDIT_CHECKPOINT_V1,), witness_handler(SETTINGS.audit_log_key)
        ),
        Subscription("evidence", (Topic.AUDIT_EVIDENCE_V1,), evidence_handler()),
    ],
    on_startup=[open_blob_store],
    on_shutdown=[close_blob_store],
)


def build_app() -> Litestar:
    return build_service_app(DEFINITION)
