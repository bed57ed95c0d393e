"""gateway: the edge the portal talks to. Owns no data; forwards /v1/<route>/... to the
owning service and serves the fleet status readback at /v1/status."""

__version__ = "0.1.0"
