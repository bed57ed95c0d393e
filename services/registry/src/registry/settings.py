"""registry's own settings (GPUCLOUD_REGISTRY_* variables), besides the kit's ServiceSettings."""

import dataclasses
import os


@dataclasses.dataclass(frozen=True)
class RegistrySettings:
    # The OCI distribution registry holding the blobs (devstack: its own; Kubernetes: the
    # external registry of the Helm values), and its basic-auth credentials.
    oci_url: str | None = None
    oci_username: str | None = dataclasses.field(default=None, repr=False)
    oci_password: str | None = dataclasses.field(default=None, repr=False)
    # The largest blob an upload may carry (bytes); 10 GiB by default.
    max_blob_bytes: int = 10 * 1024**3
    # The audit log's note verifier key, given out of band; unset: the witness pins the key
    # of the first checkpoint it sees (app/witness.py).
    audit_log_key: str | None = None

    @classmethod
    def from_env(cls) -> "RegistrySettings":
        env = os.environ.get
        return cls(
            oci_url=env("GPUCLOUD_REGISTRY_OCI_URL") or None,
            oci_username=env("GPUCLOUD_REGISTRY_OCI_USERNAME") or None,
            oci_password=env("GPUCLOUD_REGISTRY_OCI_PASSWORD") or None,
            max_blob_bytes=int(env("GPUCLOUD_REGISTRY_MAX_BLOB_BYTES", str(10 * 1024**3))),
            audit_log_key=env("GPUCLOUD_REGISTRY_AUDIT_LOG_KEY") or None,
        )
