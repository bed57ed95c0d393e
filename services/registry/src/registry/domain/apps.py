"""Apps and namespaces. An app lives in one tenant's project, or in the platform-public
namespace (the nil tenant and project ids, written by the operator, readable by every
signed-in caller). Its name is unique in its namespace and valid as an OCI repository path
component, so the app's blobs live in the OCI repository `<namespace>/<name>`."""

from __future__ import annotations

import re
import uuid

PLATFORM = uuid.UUID(int=0)
NAME = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")
MAX_NAME = 63


class InvalidName(ValueError):
    pass


def check_name(name: str) -> str:
    if not isinstance(name, str) or len(name) > MAX_NAME or not NAME.match(name):
        raise InvalidName(
            "1 to 63 lowercase letters, digits and single dashes, starting and ending with a"
            " letter or digit"
        )
    return name


def is_platform(tenant_id: uuid.UUID) -> bool:
    return tenant_id == PLATFORM


def repository(tenant_id: uuid.UUID, name: str) -> str:
    """The OCI repository holding the app's blobs and manifests."""
    namespace = "platform" if is_platform(tenant_id) else f"t{tenant_id.hex}"
    return f"{namespace}/{check_name(name)}"
