"""registry: Registry and trust: apps, versions, artifacts, signatures, promotions."""

__version__ = "0.1.0"
SERVICE = "registry"
