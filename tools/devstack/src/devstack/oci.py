"""The CNCF distribution registry (the OCI registry registry keeps its blobs in), local.

Built once from the Go module proxy (`go install github.com/distribution/distribution/v3/
cmd/registry@<version>`, about 2 minutes on 2 cores) into
`${XDG_CACHE_HOME:-~/.cache}/gpucloud/oci-registry-<version>/`, as deploy/check.sh builds
helm. Storage is the filesystem under <state>/oci-registry/data; it listens on 127.0.0.1 at
deploy/fleet.toml's `[oci_registry] port` (+ the port offset) and requires HTTP basic auth
(htpasswd, bcrypt) with a generated password: only registry holds it (GPUCLOUD_REGISTRY_OCI_*),
as it would hold an external registry's credentials in Kubernetes.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import bcrypt
import httpx

from devstack import credentials, supervise
from devstack.fleet import Fleet
from devstack.paths import state_dir

NAME = "oci-registry"
VERSION = "v3.1.2"
MODULE = f"github.com/distribution/distribution/v3/cmd/registry@{VERSION}"
USERNAME = "registry"
# The node agents pull bundles as their own user. The distribution registry's htpasswd auth
# has no scopes, so this user could push too; the agents verify every digest and signature
# before running anything (docs/gpuaas.md "Launch gate"). A production registry gives nodes
# a pull-only credential (token auth with `pull` scope).
NODE_USERNAME = "node"
NODE_PASSWORD_KEY = "oci_node_password"
PASSWORD_KEY = "oci_registry_password"
SECRET_KEY = "oci_registry_http_secret"


class OciRegistryError(RuntimeError):
    pass


@dataclass(frozen=True)
class OciRegistry:
    url: str
    username: str
    password: str


def _cache() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "gpucloud" / f"oci-registry-{VERSION}"


def binary() -> Path:
    """The registry binary, built with `go install` on first use."""
    target = _cache() / "registry"
    if target.is_file():
        return target
    go = shutil.which("go") or "/usr/local/go/bin/go"
    if not Path(go).exists():
        raise OciRegistryError(
            f"the OCI registry is not built yet and Go (>= 1.24) is missing to build {MODULE}"
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "GOBIN": str(target.parent), "CGO_ENABLED": "0"}
    result = subprocess.run(
        [go, "install", "-trimpath", "-ldflags", "-s -w", MODULE],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    if result.returncode != 0 or not target.is_file():
        raise OciRegistryError(f"go install {MODULE} failed:\n{result.stderr[-3000:]}")
    return target


def _home() -> Path:
    path = state_dir() / "oci-registry"
    path.mkdir(parents=True, exist_ok=True)
    return path


def url(fleet: Fleet) -> str:
    return f"http://127.0.0.1:{fleet.oci_registry_port}"


def _write_config(fleet: Fleet) -> Path:
    home = _home()
    users = {
        USERNAME: credentials.password(PASSWORD_KEY),
        NODE_USERNAME: credentials.password(NODE_PASSWORD_KEY),
    }
    htpasswd = home / "htpasswd"
    if not _htpasswd_matches(htpasswd, users):
        lines = [
            f"{user}:{bcrypt.hashpw(pw.encode(), bcrypt.gensalt(rounds=10)).decode()}\n"
            for user, pw in users.items()
        ]
        htpasswd.write_text("".join(lines))
        htpasswd.chmod(0o600)
    config = {  # JSON is YAML: no YAML writer needed
        "version": 0.1,
        "log": {"level": "warn", "accesslog": {"disabled": True}},
        "storage": {
            "filesystem": {"rootdirectory": str(home / "data")},
            "delete": {"enabled": True},
            "maintenance": {
                "uploadpurging": {"enabled": True, "age": "24h", "interval": "1h", "dryrun": False}
            },
        },
        "http": {
            "addr": f"127.0.0.1:{fleet.oci_registry_port}",
            "secret": credentials.password(SECRET_KEY),
            "headers": {"X-Content-Type-Options": ["nosniff"]},
        },
        "auth": {"htpasswd": {"realm": "gpucloud-devstack", "path": str(htpasswd)}},
    }
    path = home / "config.yml"
    path.write_text(json.dumps(config, indent=2))
    path.chmod(0o600)
    return path


def _htpasswd_matches(path: Path, users: dict[str, str]) -> bool:
    try:
        found = dict(line.split(":", 1) for line in path.read_text().split())
    except (OSError, ValueError):
        return False
    return set(found) == set(users) and all(
        bcrypt.checkpw(pw.encode(), found[user].encode()) for user, pw in users.items()
    )


def ready(fleet: Fleet) -> bool:
    """GET /v2/ with the credentials answers 200 (the distribution API's version check)."""
    auth = (USERNAME, credentials.password(PASSWORD_KEY))
    try:
        return httpx.get(f"{url(fleet)}/v2/", auth=auth, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def start(fleet: Fleet, timeout: float = 30.0) -> OciRegistry:
    """Start the registry unless it runs; return once it answers."""
    config = _write_config(fleet)
    if not supervise.running_pid(NAME):
        if ready(fleet):
            raise OciRegistryError(
                f"port {fleet.oci_registry_port} is held by another OCI registry (another "
                "checkout's devstack?)"
            )
        supervise.spawn(NAME, [str(binary()), "serve", str(config)], cwd=_home())
    deadline = time.monotonic() + timeout
    while not ready(fleet):
        if not supervise.running_pid(NAME):
            raise OciRegistryError(
                f"the OCI registry exited while starting; last lines of "
                f"{supervise.log_file(NAME)}:\n{supervise.tail(supervise.log_file(NAME))}"
            )
        if time.monotonic() > deadline:
            raise OciRegistryError(f"the OCI registry did not answer within {timeout:.0f}s")
        time.sleep(0.1)
    return connection(fleet)


def connection(fleet: Fleet) -> OciRegistry:
    return OciRegistry(url(fleet), USERNAME, credentials.password(PASSWORD_KEY))


def stop() -> int | None:
    return supervise.stop_many([NAME]).get(NAME)
