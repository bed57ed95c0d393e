"""audit: the hash-chained audit log of privileged events and the service status read model."""

__version__ = "0.1.0"
