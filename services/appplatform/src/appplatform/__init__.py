"""appplatform: App runtime: app manifests, catalog, app instances, launch requests."""

__version__ = "0.1.0"
SERVICE = "appplatform"
