"""The fleet as declared in deploy/fleet.toml: Kafka and PostgreSQL ports, services, gateway,
node agents."""

from __future__ import annotations

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


@dataclass(frozen=True)
class Fleet:
    kafka_bootstrap: str
    kafka_controller: str
    postgres_port: int
    services: tuple[Service, ...]
    gateway: Service
    node_agents: tuple[Service, ...]

    @property
    def database_packages(self) -> tuple[str, ...]:
        """Packages owning a database; each is also that database's name and login role."""
        return tuple(s.package for s in self.services if s.database)

    @property
    def processes(self) -> tuple[Service, ...]:
        """Every process `devstack up` runs, in start order."""
        return (*self.services, self.gateway, *self.node_agents)

    def find(self, name: str) -> Service:
        for proc in self.processes:
            if name in (proc.name, proc.package):
                return proc
        known = ", ".join(p.name for p in self.processes)
        raise KeyError(f"unknown process {name!r}; known: {known}")


@cache
def load() -> Fleet:
    data = tomllib.loads(fleet_file().read_text())
    services = tuple(
        Service(
            name=s["name"],
            package=s["package"],
            port=int(s["port"]),
            database=bool(s.get("database", False)),
            route=s.get("route"),
        )
        for s in data.get("service", [])
    )
    gw = data["gateway"]
    gateway = Service(name="gateway", package=gw["package"], port=int(gw["port"]))
    na = data["node_agent"]
    node_agents = tuple(
        Service(name=f"node-agent-{i}", package=na["package"], port=int(na["first_port"]) + i - 1)
        for i in range(1, int(na.get("replicas", 1)) + 1)
    )
    return Fleet(
        kafka_bootstrap=data["kafka"]["bootstrap"],
        kafka_controller=data["kafka"]["controller"],
        postgres_port=int(data["postgres"]["port"]),
        services=services,
        gateway=gateway,
        node_agents=node_agents,
    )
