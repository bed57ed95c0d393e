"""The deployment artifacts agree with deploy/fleet.toml, the one list of deployables.

compose.yaml, the Helm chart's `services` map and the Dockerfile are parsed directly (no
Docker needed). The rendered-manifest checks run the helm that deploy/check.sh builds
(`just deploy-check` runs first in CI); without it only those tests skip.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "deploy" / "helm" / "gpucloud"
TEST_VALUES = REPO / "tests" / "deploy" / "test-values.yaml"
NODE_AGENT_KEY = "gpuaas-node-agent"  # the node agent's key in the chart (services/<it>)
HTTP_PORT = 8000


@dataclass(frozen=True)
class Deployable:
    name: str
    package: str
    database: bool = False
    route: str | None = None


@cache
def fleet() -> dict:
    return tomllib.loads((REPO / "deploy" / "fleet.toml").read_text())


def fleet_services() -> list[Deployable]:
    return [
        Deployable(s["name"], s["package"], bool(s.get("database")), s.get("route"))
        for s in fleet()["service"]
    ]


def node_agent_names() -> list[str]:
    """The devstack names of the simulated node agents: node-agent-1, node-agent-2, ..."""
    return [f"node-agent-{i}" for i in range(1, int(fleet()["node_agent"]["replicas"]) + 1)]


@cache
def compose() -> dict:
    return yaml.safe_load((REPO / "compose.yaml").read_text())


@cache
def chart_values() -> dict:
    return yaml.safe_load((CHART / "values.yaml").read_text())


def pinned_version(script: str, variable: str) -> str:
    match = re.search(rf"^{variable}=(\S+)", script, re.MULTILINE)
    assert match, f"deploy/check.sh sets no {variable}"
    return match.group(1)


def helm_binary() -> Path:
    """Where deploy/check.sh installs helm (same variables, same defaults)."""
    version = pinned_version((REPO / "deploy" / "check.sh").read_text(), "HELM_VERSION")
    cache_home = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    tools = Path(os.environ.get("GPUCLOUD_DEPLOY_TOOLS", cache_home / "gpucloud" / "deploy-tools"))
    return tools / f"helm-{version}" / "helm"


class TestCompose:
    def test_every_fleet_deployable_runs(self):
        services = compose()["services"]
        expected = {s.name for s in fleet_services()} | {"gateway", "kafka", "provision-topics"}
        expected |= {"portal"} | set(node_agent_names())
        expected |= {f"postgres-{s.name}" for s in fleet_services() if s.database}
        assert set(services) == expected

    def test_each_image_builds_its_package_from_the_one_dockerfile(self):
        services = compose()["services"]
        packages = {s.name: s.package for s in fleet_services()}
        packages["gateway"] = fleet()["gateway"]["package"]
        packages["portal"] = fleet()["portal"]["package"]
        for agent in node_agent_names():
            packages[agent] = fleet()["node_agent"]["package"]
        for name, package in packages.items():
            build = services[name]["build"]
            assert build["dockerfile"] == "deploy/docker/Dockerfile", name
            assert build["args"]["PACKAGE"] == package, name
            member = REPO / "services" / build["args"]["SERVICE"] / "pyproject.toml"
            assert member.is_file(), f"{name}: no workspace member {member.parent}"
            project = tomllib.loads(member.read_text())["project"]["name"]
            assert project == f"gpucloud-{build['args']['SERVICE']}", name

    def test_each_service_uses_its_own_database(self):
        services = compose()["services"]
        for service in (s for s in fleet_services() if s.database):
            postgres = services[f"postgres-{service.name}"]
            assert re.fullmatch(r"postgres:15\.\d+(-\w+)?", postgres["image"]), postgres["image"]
            assert postgres["environment"]["POSTGRES_DB"] == service.package
            url = services[service.name]["environment"]["GPUCLOUD_DATABASE_URL"]
            assert url.endswith(f"@postgres-{service.name}:5432/{service.package}"), url
            assert services[service.name]["depends_on"][f"postgres-{service.name}"] == {
                "condition": "service_healthy"
            }

    def test_the_gateway_forwards_every_route(self):
        upstreams = compose()["services"]["gateway"]["environment"]["GPUCLOUD_UPSTREAMS"]
        assert dict(pair.split("=", 1) for pair in upstreams.split(",")) == {
            s.route: f"http://{s.name}:{HTTP_PORT}" for s in fleet_services() if s.route
        }

    def test_the_gateway_serves_the_portal_at_the_root(self):
        services = compose()["services"]
        assert services["gateway"]["environment"]["GPUCLOUD_PORTAL_URL"] == "http://portal:8000"
        assert services["portal"]["environment"]["GPUCLOUD_GATEWAY_URL"] == "http://gateway:8000"
        assert "GPUCLOUD_DATABASE_URL" not in services["portal"]["environment"]

    def test_startup_order_waits_on_health_and_topics(self):
        services = compose()["services"]
        assert re.fullmatch(r"apache/kafka:\d+\.\d+\.\d+", services["kafka"]["image"])
        for name, service in services.items():
            if name.startswith("postgres-") or name in {"kafka", "provision-topics"}:
                assert "healthcheck" in service or name == "provision-topics", name
                continue
            assert "healthcheck" in service, name
            for dependency, condition in service.get("depends_on", {}).items():
                assert dependency in services, f"{name} depends on unknown {dependency}"
                assert condition["condition"] in {
                    "service_healthy",
                    "service_completed_successfully",
                    # the gateway and the portal call each other: one of them starts first
                    *(["service_started"] if (name, dependency) == ("gateway", "portal") else []),
                }, name
        for service in fleet_services():
            assert services[service.name]["depends_on"]["provision-topics"] == {
                "condition": "service_completed_successfully"
            }


class TestDockerfile:
    def test_multi_stage_uv_build_running_as_non_root(self):
        text = (REPO / "deploy" / "docker" / "Dockerfile").read_text()
        base = re.search(r"^ARG PYTHON_IMAGE=(\S+)", text, re.MULTILINE)
        assert base and re.fullmatch(
            r"python:3\.11\.\d+-slim(-\w+)?(@sha256:[0-9a-f]{64})?", base[1]
        )
        assert "AS builder" in text and "AS runtime" in text
        assert re.search(r'uv sync --frozen --no-dev .*--package "gpucloud-\$\{SERVICE\}"', text)
        assert "ARG PACKAGE" in text
        user = re.findall(r"^USER (\S+)", text, re.MULTILINE)
        assert user and not user[-1].startswith(("root", "0")), user


class TestChartValues:
    def test_services_map_is_the_fleet(self):
        expected = {s.name for s in fleet_services()} | {"gateway", "portal", NODE_AGENT_KEY}
        assert set(chart_values()["services"]) == expected

    def test_entries_match_the_fleet(self):
        values = chart_values()["services"]
        for service in fleet_services():
            entry = values[service.name]
            assert entry["role"] == "service", service.name
            assert entry["package"] == service.package, service.name
            assert entry.get("route") == service.route, service.name
            assert ("database" in entry) == service.database, service.name
        assert values["gateway"]["role"] == "gateway"
        assert values["gateway"]["package"] == fleet()["gateway"]["package"]
        assert values["portal"]["role"] == "portal"
        assert values["portal"]["package"] == fleet()["portal"]["package"]
        assert "database" not in values["portal"] and values["portal"]["kafka"] is False
        assert "portal" in values["gateway"]["calls"] and "gateway" in values["portal"]["calls"]
        assert values[NODE_AGENT_KEY]["role"] == "node-agent"
        assert values[NODE_AGENT_KEY]["package"] == fleet()["node_agent"]["package"]

    def test_no_secret_values(self):
        references = {"secretName", "secretKey", "ownerSecretName", "ownerSecretKey"}
        for name, entry in chart_values()["services"].items():
            if "database" in entry:
                assert set(entry["database"]) - references == {"runtimeRole"}, name
            if "kafkaCredentials" in entry:
                assert set(entry["kafkaCredentials"]) == {"secretName", "secretKey"}, name
            for key in entry.get("env", {}):
                assert not re.search(r"PASSWORD|SECRET|TOKEN|DATABASE_URL", key), (name, key)


def render(values_file: str) -> tuple[dict, ...]:
    return render_with("-f", str(CHART / values_file))


def helm_template(*flags: str) -> subprocess.CompletedProcess:
    helm = helm_binary()
    if not helm.is_file():
        reason = f"helm not at {helm}: run `just deploy-check` (deploy/check.sh) first"
        if os.environ.get("CI"):
            pytest.fail(reason)  # CI never skips for want of a tool
        pytest.skip(reason)
    args = [str(helm), "template", "gpucloud", str(CHART), *flags]
    return subprocess.run(args, capture_output=True, text=True, timeout=60)


@cache
def render_with(*flags: str) -> tuple[dict, ...]:
    """`helm template` of the chart with these flags and tests/deploy/test-values.yaml (the
    Stripe Secret a real install names; last, so a values file does not unset it), as parsed
    documents."""
    result = helm_template(*flags, "-f", str(TEST_VALUES))
    assert result.returncode == 0, result.stderr
    return tuple(doc for doc in yaml.safe_load_all(result.stdout) if doc)


@pytest.fixture(scope="module", params=["values.yaml", "values-production.yaml"])
def manifests(request) -> tuple[dict, ...]:
    return render(request.param)


def pod_specs(manifests: tuple[dict, ...]) -> Iterator[tuple[str, dict]]:
    for doc in manifests:
        if doc["kind"] in {"Deployment", "DaemonSet", "Job"}:
            yield f"{doc['kind']}/{doc['metadata']['name']}", doc["spec"]["template"]["spec"]


READINESS_JOB = "gpucloud-readiness-evidence"


class TestRenderedChart:
    def test_every_deployable_has_its_workload(self, manifests):
        kinds = {(d["kind"], d["metadata"]["name"]) for d in manifests}
        for name in [s.name for s in fleet_services()] + ["gateway", "portal"]:
            for kind in ("Deployment", "Service", "ServiceAccount", "ConfigMap", "NetworkPolicy"):
                assert (kind, f"gpucloud-{name}") in kinds, (kind, name)
            assert ("PodDisruptionBudget", f"gpucloud-{name}") in kinds, name
        assert ("DaemonSet", f"gpucloud-{NODE_AGENT_KEY}") in kinds
        for service in (s for s in fleet_services() if s.database):
            assert ("Job", f"gpucloud-{service.name}-migrate") in kinds, service.name
        assert ("Job", "gpucloud-provision-topics") in kinds

    def test_pods_have_probes_resources_and_run_as_non_root(self, manifests):
        for workload, spec in pod_specs(manifests):
            assert spec["securityContext"]["runAsNonRoot"] is True, workload
            assert spec["automountServiceAccountToken"] is False, workload
            for container in spec["containers"]:
                resources = container["resources"]
                for bound in ("requests", "limits"):
                    assert {"cpu", "memory"} <= set(resources[bound]), (workload, bound)
                security = container["securityContext"]
                assert security["allowPrivilegeEscalation"] is False, workload
                assert security["readOnlyRootFilesystem"] is True, workload
                if workload.startswith("Job/"):
                    continue
                assert container["livenessProbe"]["httpGet"]["path"] == "/healthz", workload
                assert container["readinessProbe"]["httpGet"]["path"] == "/readyz", workload

    def test_database_urls_come_from_secrets(self, manifests):
        for workload, spec in pod_specs(manifests):
            for container in spec["containers"]:
                for env in container.get("env", []):
                    if env["name"] in {"GPUCLOUD_DATABASE_URL", "GPUCLOUD_OPERATOR_TOKEN"}:
                        assert "secretKeyRef" in env["valueFrom"], (workload, env["name"])

    def test_hooks_run_before_install_and_upgrade(self, manifests):
        for doc in manifests:
            if doc["kind"] == "Job" and doc["metadata"]["name"] != READINESS_JOB:
                hook = doc["metadata"]["annotations"]["helm.sh/hook"]
                assert hook == "pre-install,pre-upgrade", doc["metadata"]["name"]

    def test_readiness_evidence_is_recorded_after_install_and_upgrade(self):
        """Issue 15 item 5: with an operator token, a post hook records each service's
        readiness in audit; without one there is nothing to record it with."""
        manifests = render_with("--set", "operatorToken.secretName=gpucloud-operator-token")
        (job,) = [d for d in manifests if d["metadata"]["name"] == READINESS_JOB]
        assert job["metadata"]["annotations"]["helm.sh/hook"] == "post-install,post-upgrade"
        (container,) = job["spec"]["template"]["spec"]["containers"]
        assert container["command"] == ["python", "-m", "audit.readiness"]
        args = container["args"]
        services = set(args[args.index("--services") + 1].split(","))
        assert {s.name for s in fleet_services()} | {"gateway"} <= services
        assert args[args.index("--audit-url") + 1] == "http://gpucloud-audit:8000"
        token = env_of(container)["GPUCLOUD_OPERATOR_TOKEN"]["valueFrom"]["secretKeyRef"]
        assert token["name"] == "gpucloud-operator-token"
        assert READINESS_JOB not in {d["metadata"]["name"] for d in render_with()}

    def test_node_agent_runs_on_gpu_nodes(self, manifests):
        (agent,) = [d for d in manifests if d["kind"] == "DaemonSet"]
        spec = agent["spec"]["template"]["spec"]
        assert spec["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
        assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in spec[
            "tolerations"
        ]
        env = {e["name"]: e for e in spec["containers"][0]["env"]}
        assert env["GPUCLOUD_NODE_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "spec.nodeName"

    def test_gateway_upstreams_cover_every_route(self, manifests):
        (config,) = [
            d
            for d in manifests
            if d["kind"] == "ConfigMap" and d["metadata"]["name"] == "gpucloud-gateway"
        ]
        upstreams = dict(p.split("=", 1) for p in config["data"]["GPUCLOUD_UPSTREAMS"].split(","))
        assert upstreams == {
            s.route: f"http://gpucloud-{s.name}:{HTTP_PORT}" for s in fleet_services() if s.route
        }

    def test_the_gateway_reaches_the_portal_and_the_portal_the_gateway(self, manifests):
        config = {d["metadata"]["name"]: d["data"] for d in manifests if d["kind"] == "ConfigMap"}
        assert (
            config["gpucloud-gateway"]["GPUCLOUD_PORTAL_URL"]
            == f"http://gpucloud-portal:{HTTP_PORT}"
        )
        assert (
            config["gpucloud-portal"]["GPUCLOUD_GATEWAY_URL"]
            == f"http://gpucloud-gateway:{HTTP_PORT}"
        )

    def test_production_autoscales_every_deployment(self):
        manifests = render("values-production.yaml")
        deployments = {d["metadata"]["name"] for d in manifests if d["kind"] == "Deployment"}
        scaled = {
            d["spec"]["scaleTargetRef"]["name"]
            for d in manifests
            if d["kind"] == "HorizontalPodAutoscaler"
        }
        assert scaled == deployments

    def test_production_metrics_are_scrapable_with_a_secret_token(self):
        """Production names a metrics Secret: every serving pod gets the token from it, the
        scrape annotations, and a NetworkPolicy rule admitting the scrapers to the port."""
        manifests = render("values-production.yaml")
        scrape_from = chart_values()["metrics"]["scrapeFrom"]
        serving = {
            d["metadata"]["name"] for d in manifests if d["kind"] in {"Deployment", "DaemonSet"}
        }
        for doc in manifests:
            if doc["kind"] in {"Deployment", "DaemonSet"}:
                template = doc["spec"]["template"]
                assert template["metadata"]["annotations"]["prometheus.io/scrape"] == "true"
                (container,) = template["spec"]["containers"]
                env = {e["name"]: e for e in container.get("env", [])}
                ref = env["GPUCLOUD_METRICS_TOKEN"]["valueFrom"]["secretKeyRef"]
                assert ref["name"] == "gpucloud-metrics", doc["metadata"]["name"]
            if doc["kind"] == "NetworkPolicy" and doc["metadata"]["name"] in serving:
                assert any(rule.get("from") == scrape_from for rule in doc["spec"]["ingress"]), doc[
                    "metadata"
                ]["name"]

    def test_default_values_serve_no_metrics_token_and_open_no_scrape_port(self):
        for doc in render("values.yaml"):
            if doc["kind"] == "NetworkPolicy":
                scrape_from = chart_values()["metrics"]["scrapeFrom"]
                assert all(rule.get("from") != scrape_from for rule in doc["spec"]["ingress"])
        for workload, spec in pod_specs(render("values.yaml")):
            for container in spec["containers"]:
                names = {e["name"] for e in container.get("env", [])}
                assert "GPUCLOUD_METRICS_TOKEN" not in names, workload


def containers(manifests: tuple[dict, ...], kind: str) -> Iterator[tuple[str, dict]]:
    for doc in manifests:
        if doc["kind"] == kind:
            (container,) = doc["spec"]["template"]["spec"]["containers"]
            yield doc["metadata"]["name"], container


def env_of(container: dict) -> dict[str, dict]:
    return {e["name"]: e for e in container.get("env", [])}


def config_maps(manifests: tuple[dict, ...]) -> dict[str, dict]:
    return {d["metadata"]["name"]: d["data"] for d in manifests if d["kind"] == "ConfigMap"}


class TestTrust:
    """Issue 19: each service's own Kafka principal; owner and runtime database roles."""

    def test_migration_jobs_run_as_the_owner_and_grant_to_the_runtime_role(self, manifests):
        values = chart_values()["services"]
        jobs = dict(containers(manifests, "Job"))
        for service in (s for s in fleet_services() if s.database):
            env = env_of(jobs[f"gpucloud-{service.name}-migrate"])
            database = values[service.name]["database"]
            owner = env["GPUCLOUD_DATABASE_OWNER_URL"]["valueFrom"]["secretKeyRef"]
            assert owner == {"name": database["secretName"], "key": database["ownerSecretKey"]}
            assert env["GPUCLOUD_DATABASE_RUNTIME_ROLE"]["value"] == database["runtimeRole"]
            # a migration holds no runtime URL and no Kafka principal
            assert "GPUCLOUD_DATABASE_URL" not in env, service.name
            assert not any(name.startswith("GPUCLOUD_KAFKA_SASL") for name in env), service.name

    def test_pods_serve_as_the_runtime_role_and_their_own_kafka_principal(self, manifests):
        values = chart_values()["services"]
        configs = config_maps(manifests)
        for name, container in containers(manifests, "Deployment"):
            key = name.removeprefix("gpucloud-")
            env, entry = env_of(container), values[key]
            assert "GPUCLOUD_DATABASE_OWNER_URL" not in env, key
            if "database" in entry:
                runtime = env["GPUCLOUD_DATABASE_URL"]["valueFrom"]["secretKeyRef"]
                assert runtime == {
                    "name": entry["database"]["secretName"],
                    "key": entry["database"]["secretKey"],
                }
            if entry.get("kafka", True):
                password = env["GPUCLOUD_KAFKA_SASL_PASSWORD"]["valueFrom"]["secretKeyRef"]
                assert password["name"] == entry["kafkaCredentials"]["secretName"], key
                assert configs[name]["GPUCLOUD_KAFKA_SASL_USERNAME"] == key  # the ACLs' name
                assert configs[name]["GPUCLOUD_KAFKA_SECURITY_PROTOCOL"] == "SASL_SSL"
            else:
                assert "GPUCLOUD_KAFKA_SASL_PASSWORD" not in env, key
                assert "GPUCLOUD_KAFKA_SASL_USERNAME" not in configs[name], key

    def test_the_provision_job_makes_topics_and_acls_as_the_admin(self, manifests):
        (job,) = [c for n, c in containers(manifests, "Job") if n == "gpucloud-provision-topics"]
        assert job["command"] == ["python", "-m", "platformkit.provision"]
        assert "--no-acls" not in job.get("args", [])
        env = env_of(job)
        admin = chart_values()["kafka"]["admin"]
        assert env["GPUCLOUD_KAFKA_SASL_USERNAME"]["value"] == admin["username"]
        password = env["GPUCLOUD_KAFKA_SASL_PASSWORD"]["valueFrom"]["secretKeyRef"]
        assert password == {"name": admin["secretName"], "key": admin["secretKey"]}
        for name, container in containers(manifests, "Deployment"):
            assert "GPUCLOUD_KAFKA_SASL_USERNAME" not in env_of(container), name
            assert admin["secretName"] not in str(container), name  # no pod holds the admin

    def test_sasl_ssl_trusts_the_ca_given(self):
        manifests = render_with("--set", "kafka.ca.secretName=gpucloud-kafka-ca")
        configs = config_maps(manifests)
        for doc in manifests:
            if doc["kind"] not in {"Deployment", "Job"}:
                continue
            name, spec = doc["metadata"]["name"], doc["spec"]["template"]["spec"]
            mounts = {v["name"] for v in spec.get("volumes", [])}
            kafka = name == "gpucloud-provision-topics" or (
                doc["kind"] == "Deployment"
                and "GPUCLOUD_KAFKA_SASL_USERNAME" in configs.get(name, {})
            )
            assert ("kafka-ca" in mounts) == kafka, name
            if doc["kind"] == "Deployment" and kafka:
                assert configs[name]["GPUCLOUD_KAFKA_SSL_CAFILE"].startswith("/var/run/secrets/")


def _required_settings():
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "required_settings", REPO / "deploy" / "required_settings.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class TestProductionSettings:
    """Every pod gets what its service declares it needs in production (the list it refuses
    to start without), checked by the same deploy/required_settings.py `just deploy-check`
    runs; a chart that drops one fails."""

    def test_every_pod_gets_every_required_setting(self, manifests):
        assert _required_settings().gaps(list(manifests)) == []

    def test_a_chart_missing_a_required_setting_fails(self):
        checker = _required_settings()
        # null deletes a key of the chart's values (an empty map would merge with them)
        without = render_with(
            "--set", "services.audit.secretEnv.GPUCLOUD_AUDIT_KEY_PASSPHRASE=null"
        )
        gaps = checker.gaps(list(without))
        assert gaps == ["Deployment gpucloud-audit (audit) lacks GPUCLOUD_AUDIT_KEY_PASSPHRASE"], (
            gaps
        )
        # the sandbox (a demo cluster, development) gives billing no Stripe keys
        sandbox = render_with(
            "--set", "environment=development",
            "--set", "services.billing.payments.provider=sandbox",
            "--set", "services.billing.payments.sandbox=true",
        )  # fmt: skip
        assert any(
            "gpucloud-billing (billing) lacks GPUCLOUD_BILLING_STRIPE_API_KEY, "
            "GPUCLOUD_BILLING_STRIPE_WEBHOOK_SECRET" in gap
            for gap in checker.gaps(list(sandbox))
        )

    def test_a_development_render_is_not_production(self):
        rendered = render_with("--set", "environment=development")
        assert any("not production" in gap for gap in _required_settings().gaps(list(rendered)))

    def test_every_service_verifies_iams_tokens_with_its_audience(self):
        rendered = render_with("--set", "services.billing.tokenAudience=gpucloud-billing")
        config = {d["metadata"]["name"]: d["data"] for d in rendered if d["kind"] == "ConfigMap"}
        iam = config["gpucloud-iam"]
        assert iam["GPUCLOUD_IAM_TOKEN_AUDIENCES"] == "gpucloud,gpucloud-billing"
        assert "GPUCLOUD_JWKS_URL" not in iam
        assert config["gpucloud-billing"]["GPUCLOUD_TOKEN_AUDIENCE"] == "gpucloud-billing"
        for service in fleet_services():
            data = config[f"gpucloud-{service.name}"]
            assert data["GPUCLOUD_TOKEN_ISSUER"] == chart_values()["tokens"]["issuer"]
            if service.name != "iam":
                assert data["GPUCLOUD_JWKS_URL"] == (
                    f"http://gpucloud-iam:{HTTP_PORT}/v1/iam/.well-known/jwks.json"
                )

    @pytest.mark.parametrize("package", ["audit", "portal", "node_agent"])
    def test_a_production_service_without_its_settings_refuses_to_start(self, package):
        env = {k: v for k, v in os.environ.items() if not k.startswith("GPUCLOUD_")}
        env["GPUCLOUD_ENVIRONMENT"] = "production"
        out = subprocess.run(
            [sys.executable, "-m", package], env=env, capture_output=True, text=True, timeout=180
        )
        assert out.returncode != 0
        expected = _required_settings().requirements(package)[1:]
        assert f"these required settings are not set: {', '.join(expected)}" in out.stderr


class TestPayments:
    """The chart chooses Stripe and refuses to render without its Secret: no install settles
    top-ups through the sandbox (money from nothing) by accident."""

    def test_default_values_without_the_stripe_secret_fail_to_render(self):
        result = helm_template()
        assert result.returncode != 0
        assert "services.billing.payments.stripe.secretName" in result.stderr

    def test_the_sandbox_renders_only_when_meant(self):
        result = helm_template("--set", "services.billing.payments.provider=sandbox")
        assert result.returncode != 0
        assert "services.billing.payments.sandbox" in result.stderr
        in_production = helm_template(
            "--set", "services.billing.payments.provider=sandbox",
            "--set", "services.billing.payments.sandbox=true",
        )  # fmt: skip
        assert in_production.returncode != 0
        assert "production takes Stripe" in in_production.stderr
        manifests = render_with(
            "--set", "environment=development",
            "--set", "services.billing.payments.provider=sandbox",
            "--set", "services.billing.payments.sandbox=true",
        )  # fmt: skip
        (billing,) = (c for n, c in containers(manifests, "Deployment") if n == "gpucloud-billing")
        env = env_of(billing)
        assert env["GPUCLOUD_BILLING_PAYMENT_PROVIDER"]["value"] == "sandbox"
        assert env["GPUCLOUD_BILLING_SANDBOX_PAYMENTS"]["value"] == "true"
        assert "GPUCLOUD_BILLING_STRIPE_API_KEY" not in env

    def test_billing_serves_stripe_with_its_keys_from_the_secret(self, manifests):
        for name, container in containers(manifests, "Deployment"):
            env = env_of(container)
            if name != "gpucloud-billing":
                assert not [k for k in env if k.startswith("GPUCLOUD_BILLING_")], name
                continue
            assert env["GPUCLOUD_BILLING_PAYMENT_PROVIDER"]["value"] == "stripe"
            assert "GPUCLOUD_BILLING_SANDBOX_PAYMENTS" not in env
            for key, secret_key in (
                ("GPUCLOUD_BILLING_STRIPE_API_KEY", "api-key"),
                ("GPUCLOUD_BILLING_STRIPE_WEBHOOK_SECRET", "webhook-secret"),
            ):
                ref = env[key]["valueFrom"]["secretKeyRef"]
                assert ref == {"name": "gpucloud-billing-stripe", "key": secret_key}
        for name, container in containers(manifests, "Job"):  # migrations need no provider
            assert "GPUCLOUD_BILLING_PAYMENT_PROVIDER" not in env_of(container), name
