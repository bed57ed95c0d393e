"""Generated passwords, kept in <state>/secrets.json (mode 0600): made once, reused afterwards."""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path

from devstack.paths import state_dir

ADMIN_ROLE = "gpucloud_admin"
# Bearer token of the local operator (GPUCLOUD_OPERATOR_TOKEN), never printed.
OPERATOR_TOKEN = "operator_token"


def path() -> Path:
    return state_dir() / "secrets.json"


def load() -> dict[str, str]:
    try:
        return json.loads(path().read_text())
    except FileNotFoundError:
        return {}


def password(role: str) -> str:
    """The password of a PostgreSQL role, generated and saved on first use."""
    stored = load()
    if role not in stored:
        stored[role] = secrets.token_urlsafe(24)
        target = path()
        tmp = target.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(stored, f, indent=2, sort_keys=True)
        os.replace(tmp, target)
    return stored[role]
