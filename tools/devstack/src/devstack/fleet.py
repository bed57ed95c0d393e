"""The fleet as declared in deploy/fleet.toml: Kafka, PostgreSQL, OCI registry and mail sink ports,
services, gateway, node agents.

GPUCLOUD_DEVSTACK_PORT_OFFSET=<n> adds n to every port (Kafka, its controller, PostgreSQL, the
OCI registry, every service, the gateway, the node agents), so a second, isolated stack (with
its own GPUCLOUD_DEVSTACK_HOME) runs beside the default one; every URL devstack derives follows.
GPUCLOUD_DEVSTACK_SERVICES=iam,billing,... runs only those services (plus the gateway and the
node agents; the portal only when the list names it): a lighter stack for runs that need part
of the fleet (the chaos run).
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass
from functools import cache

from devstack.paths import fleet_file


@dataclass(frozen=True)
class Service:
    name: str
    package: str
    port: int
    database: bool = False
    route: str | None = None
    ssh_port: int | None = None


@dataclass(frozen=True)
class Fleet:
    kafka_bootstrap: str
    kafka_controller: str
    postgres_port: int
    services: tuple[Service, ...]
    gateway: Service
    node_agents: tuple[Service, ...]
    # Every [[service]] of the file (GPUCLOUD_DEVSTACK_SERVICES aside): one Kafka principal
    # each, so a lighter stack's broker knows the same principals as the full one.
    kafka_principals: tuple[str, ...] = ()
    portal: Service | None = None
    oci_registry_port: int = 0
    # The local SMTP sink iam sends verification and invitation mail to (devstack/mail.py).
    mail_sink_port: int = 0

    @property
    def database_packages(self) -> tuple[str, ...]:
        """Packages owning a database; each is also that database's name and login role."""
        return tuple(s.package for s in self.services if s.database)

    @property
    def processes(self) -> tuple[Service, ...]:
        """Every process `devstack up` runs, in start order."""
        portal = (self.portal,) if self.portal else ()
        return (*self.services, *portal, self.gateway, *self.node_agents)

    def find(self, name: str) -> Service:
        for proc in self.processes:
            if name in (proc.name, proc.package):
                return proc
        known = ", ".join(p.name for p in self.processes)
        raise KeyError(f"unknown process {name!r}; known: {known}")


PORT_OFFSET_ENV = "GPUCLOUD_DEVSTACK_PORT_OFFSET"
SERVICES_ENV = "GPUCLOUD_DEVSTACK_SERVICES"


def port_offset() -> int:
    """$GPUCLOUD_DEVSTACK_PORT_OFFSET (0 when unset): added to every port of the fleet."""
    raw = os.environ.get(PORT_OFFSET_ENV, "").strip()
    offset = int(raw) if raw else 0
    if not 0 <= offset < 30000:
        raise ValueError(f"{PORT_OFFSET_ENV}={raw!r}: expected 0 <= offset < 30000")
    return offset


def _shift(address: str, offset: int) -> str:
    host, port = address.rsplit(":", 1)
    return f"{host}:{int(port) + offset}"


@cache
def load() -> Fleet:
    data = tomllib.loads(fleet_file().read_text())
    off = port_offset()
    services = tuple(
        Service(
            name=s["name"],
            package=s["package"],
            port=int(s["port"]) + off,
            database=bool(s.get("database", False)),
            route=s.get("route"),
            ssh_port=int(s["ssh_port"]) + off if s.get("ssh_port") else None,
        )
        for s in data.get("service", [])
    )
    principals = tuple(s.name for s in services)
    only = {n.strip() for n in os.environ.get(SERVICES_ENV, "").split(",") if n.strip()}
    if only:
        unknown = only - {s.name for s in services} - {"portal"}
        if unknown:
            raise ValueError(f"{SERVICES_ENV}: unknown services {sorted(unknown)}")
        services = tuple(s for s in services if s.name in only)
    gw = data["gateway"]
    gateway = Service(name="gateway", package=gw["package"], port=int(gw["port"]) + off)
    na = data["node_agent"]
    node_agents = tuple(
        Service(
            name=f"node-agent-{i}", package=na["package"], port=int(na["first_port"]) + off + i - 1
        )
        for i in range(1, int(na.get("replicas", 1)) + 1)
    )
    web = data.get("portal")
    portal = (
        Service(name="portal", package=web["package"], port=int(web["port"]) + off)
        if web and (not only or "portal" in only)
        else None
    )
    return Fleet(
        portal=portal,
        kafka_bootstrap=_shift(data["kafka"]["bootstrap"], off),
        kafka_controller=_shift(data["kafka"]["controller"], off),
        postgres_port=int(data["postgres"]["port"]) + off,
        services=services,
        gateway=gateway,
        node_agents=node_agents,
        kafka_principals=principals,
        oci_registry_port=int(data.get("oci_registry", {}).get("port", 15000)) + off,
        mail_sink_port=int(data.get("mail_sink", {}).get("port", 15025)) + off,
    )
