"""An isolated stack (GPUCLOUD_DEVSTACK_HOME + GPUCLOUD_DEVSTACK_PORT_OFFSET): every port and
every URL derived from one moves by the offset; without them nothing changes."""

from collections.abc import Iterator
from pathlib import Path

import pytest

from devstack import fleet, paths, processes
from devstack.infra import Infra


@pytest.fixture
def fresh_fleet() -> Iterator[None]:
    fleet.load.cache_clear()
    yield
    fleet.load.cache_clear()


def _ports(f: fleet.Fleet) -> list[int]:
    kafka = [int(a.rsplit(":", 1)[1]) for a in (f.kafka_bootstrap, f.kafka_controller)]
    return [*kafka, f.postgres_port, f.oci_registry_port, *(p.port for p in f.processes)]


def test_offset_moves_every_port(monkeypatch, fresh_fleet) -> None:
    monkeypatch.delenv(fleet.PORT_OFFSET_ENV, raising=False)
    monkeypatch.delenv(fleet.SERVICES_ENV, raising=False)
    default = fleet.load()
    fleet.load.cache_clear()
    monkeypatch.setenv(fleet.PORT_OFFSET_ENV, "1000")
    shifted = fleet.load()
    assert _ports(shifted) == [p + 1000 for p in _ports(default)]
    assert [p.name for p in shifted.processes] == [p.name for p in default.processes]


def test_offset_is_validated(monkeypatch, fresh_fleet) -> None:
    monkeypatch.setenv(fleet.PORT_OFFSET_ENV, "-5")
    with pytest.raises(ValueError):
        fleet.load()


def test_service_subset(monkeypatch, fresh_fleet) -> None:
    monkeypatch.setenv(fleet.SERVICES_ENV, "iam,gpuaas")
    f = fleet.load()
    assert [s.name for s in f.services] == ["iam", "gpuaas"]
    assert f.gateway and f.node_agents
    fleet.load.cache_clear()
    monkeypatch.setenv(fleet.SERVICES_ENV, "iam,nonesuch")
    with pytest.raises(ValueError):
        fleet.load()


def test_home_and_derived_urls(monkeypatch, fresh_fleet, tmp_path: Path) -> None:
    monkeypatch.setenv("GPUCLOUD_DEVSTACK_HOME", str(tmp_path))
    monkeypatch.setenv(fleet.PORT_OFFSET_ENV, "1000")
    monkeypatch.delenv(fleet.SERVICES_ENV, raising=False)
    for name in ("GPUCLOUD_TOKEN_ISSUER", "GPUCLOUD_NODE_STATE_DIR"):
        monkeypatch.delenv(name, raising=False)
    assert paths.state_dir() == tmp_path.resolve()
    f = fleet.load()
    infra = Infra(kafka_bootstrap=f.kafka_bootstrap, pg_admin_url="unused", pg_port=f.postgres_port)
    gateway = processes.environment(f.gateway, f, infra)
    assert "iam=http://127.0.0.1:9101" in gateway["GPUCLOUD_UPSTREAMS"].split(",")
    assert gateway["GPUCLOUD_JWKS_URL"].startswith("http://127.0.0.1:9101/")
    assert gateway["GPUCLOUD_TOKEN_ISSUER"] == "http://127.0.0.1:9080/v1/iam"
    assert gateway["GPUCLOUD_KAFKA_BOOTSTRAP"] == "127.0.0.1:20092"
    billing = processes.environment(f.find("billing"), f, infra)
    assert billing["GPUCLOUD_DATABASE_URL"].startswith("postgresql://billing_runtime:")
    assert ":16432/billing" in billing["GPUCLOUD_DATABASE_URL"]
    assert billing["GPUCLOUD_DATABASE_OWNER_URL"].startswith("postgresql://billing:")
    assert billing["GPUCLOUD_KAFKA_SASL_USERNAME"] == "billing"
    assert billing["GPUCLOUD_KAFKA_SECURITY_PROTOCOL"] == "SASL_PLAINTEXT"
    assert "GPUCLOUD_KAFKA_SASL_USERNAME" not in gateway  # no Kafka, no credentials
    agent = processes.environment(f.node_agents[0], f, infra)
    assert agent["GPUCLOUD_GPUAAS_URL"] == "http://127.0.0.1:9104"
    assert agent["GPUCLOUD_HTTP_PORT"] == "9201"
    assert agent["GPUCLOUD_NODE_STATE_DIR"] == str(tmp_path.resolve() / "node-agent")
    assert (tmp_path / "secrets.json").is_file()  # its own secrets, not the default stack's


def test_kafka_cluster_ids_never_start_with_a_dash() -> None:
    # kafka-storage's parser took a leading '-' for an option: a fresh home failed 1 time in 64
    from devstack.kafka import _cluster_id

    ids = [_cluster_id() for _ in range(2000)]
    assert all(len(i) == 22 and not i.startswith("-") for i in ids)
