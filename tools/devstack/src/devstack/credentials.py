"""Generated passwords, kept in <state>/secrets.json (mode 0600): made once, reused afterwards."""

from __future__ import annotations

import fcntl
import json
import os
import secrets
import threading
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


# infra starts Kafka, PostgreSQL and the OCI registry in parallel threads, each generating
# its passwords: read-modify-write of secrets.json under a lock (threads) and flock
# (processes), or one thread's write drops another's fresh password.
_lock = threading.Lock()


def password(role: str) -> str:
    """The password of a PostgreSQL role, generated and saved on first use."""
    stored = load()
    if role in stored:
        return stored[role]
    target = path()
    target.parent.mkdir(parents=True, exist_ok=True)
    with _lock, open(target.with_suffix(".lock"), "a") as lock_file:
        fcntl.flock(lock_file, fcntl.LOCK_EX)
        stored = load()
        if role not in stored:
            stored[role] = secrets.token_urlsafe(24)
            tmp = target.with_suffix(".tmp")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as f:
                json.dump(stored, f, indent=2, sort_keys=True)
            os.replace(tmp, target)
        return stored[role]
