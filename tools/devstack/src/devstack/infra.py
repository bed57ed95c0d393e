"""Kafka, PostgreSQL and the OCI registry, started on demand: `ensure_infra()` is what
`devstack infra`, `devstack up` and the test suite call. It is idempotent and safe to call from
several processes at once (a file lock under the state folder serialises starts).
"""

from __future__ import annotations

import fcntl
import os
import subprocess
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass

from devstack import credentials, fleet, kafka, mail, oci, postgres
from devstack.credentials import ADMIN_ROLE
from devstack.paths import repo_root, state_dir, venv_python

PROVISION_MODULE = "platformkit.provision"


@dataclass(frozen=True)
class Infra:
    kafka_bootstrap: str
    pg_admin_url: str
    pg_port: int
    pg_host: str = "127.0.0.1"
    # registry's blob store (devstack/oci.py): URL and basic-auth credentials
    oci_registry: oci.OciRegistry | None = None

    def kafka_env(self, principal: str = kafka.ADMIN) -> dict[str, str]:
        """GPUCLOUD_KAFKA_* of a client authenticating as `principal` (a service's name, or
        the admin super user)."""
        return kafka.client_env(fleet.load(), principal)

    def owner_url(self, package: str) -> str:
        """postgresql:// URL of the service's database as its owner role (migrations)."""
        return self._url(package, package)

    def runtime_url(self, package: str) -> str:
        """postgresql:// URL of the service's database as its runtime role (serving)."""
        return self._url(package, postgres.runtime_role(package))

    def _url(self, package: str, role: str) -> str:
        if package not in fleet.load().database_packages:
            raise KeyError(f"{package!r} owns no database in deploy/fleet.toml")
        pw = credentials.password(role)
        return f"postgresql://{role}:{pw}@{self.pg_host}:{self.pg_port}/{package}"


@contextmanager
def state_lock(name: str = "infra") -> Iterator[None]:
    """An exclusive lock across processes: <state>/<name>.lock."""
    with (state_dir() / f"{name}.lock").open("w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _ensure_kafka(f: fleet.Fleet) -> None:
    if kafka.ready(f.kafka_bootstrap):
        return
    formatted = kafka.start(f)
    kafka.wait_ready(f)
    if formatted:
        # A fresh cluster: its topics and ACLs (a restarted one keeps both in its log).
        provision_kafka(f)


def provision_kafka(f: fleet.Fleet) -> str:
    """`python -m platformkit.provision` as the admin: the contract topics, then the ACLs.
    Returns its report."""
    result = subprocess.run(
        [str(venv_python()), "-m", PROVISION_MODULE],
        cwd=repo_root(),
        env={**os.environ, **kafka.client_env(f, kafka.ADMIN)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    if result.returncode != 0:
        raise kafka.KafkaError(f"Kafka provisioning failed:\n{result.stdout}{result.stderr}")
    return result.stdout


def ensure_infra() -> Infra:
    """Start Kafka, PostgreSQL, the OCI registry and the mail sink unless they run; return
    once all answer."""
    f = fleet.load()
    with state_lock():
        with ThreadPoolExecutor(max_workers=3) as pool:
            jobs = [pool.submit(_ensure_kafka, f), pool.submit(postgres.start, f)]
            registry = pool.submit(oci.start, f)
            jobs.append(pool.submit(mail.start, f))
            for job in jobs:
                job.result()
            oci_registry = registry.result()
        admin_pw = credentials.password(ADMIN_ROLE)
    return Infra(
        kafka_bootstrap=f.kafka_bootstrap,
        pg_admin_url=f"postgresql://{ADMIN_ROLE}:{admin_pw}@127.0.0.1:{f.postgres_port}/postgres",
        pg_port=f.postgres_port,
        oci_registry=oci_registry,
    )


def stop_infra() -> dict[str, int | None]:
    with state_lock():
        return {
            "kafka": kafka.stop(),
            "postgres": postgres.stop(),
            oci.NAME: oci.stop(),
            mail.NAME: mail.stop(),
        }
