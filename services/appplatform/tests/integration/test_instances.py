"""App instances on the real stack: refusals first (no token, another tenant, another
project, a lower role, bad launches naming their field), then the controller's life of an
instance: launch -> replicas requested once -> observed running/ready -> scale -> a lost
replica replaced -> stop -> stopped; a rejected replica fails the instance."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import pytest

from appplatform.bootstrap import CONTROLLER

from .conftest import Release, Stack, manifest, token

pytestmark = pytest.mark.integration


@dataclass
class Project:
    tenant: uuid.UUID
    project: uuid.UUID
    app: str

    @property
    def base(self) -> str:
        return f"/v1/apps/tenants/{self.tenant}/projects/{self.project}"

    @property
    def member(self) -> dict:
        return token(self.tenant, "member")

    def launch_path(self, app: str | None = None) -> str:
        return f"{self.base}/apps/{app or self.app}/instances"


@pytest.fixture
async def project(stack: Stack) -> Project:
    """A tenant and project with an app released 1.0.0 (stable) and 1.1.0 (dev), 1.2.0
    unpromoted, all in the catalog."""
    tenant, project = await stack.tenant()
    app = f"app-{uuid.uuid4().hex[:8]}"
    for version, sequence, channels in (
        ("1.0.0", 3, ["dev", "stable"]),
        ("1.1.0", 2, ["dev"]),
        ("1.2.0", 1, []),
    ):
        release = Release(tenant, app, version, manifest(app, version), project=project)
        await stack.release(release, sequence, channels=channels)
    await stack.until(
        lambda: len(stack.sql("SELECT 1 FROM releases WHERE app = %s", app)) == 3,
        what="the releases projected",
    )
    return Project(tenant, project, app)


def body(name: str | None = None, **fields) -> dict:
    return {"name": name or f"i-{uuid.uuid4().hex[:8]}", "env": {"API_KEY": "k"}, **fields}


async def launch(stack: Stack, p: Project, headers=None, **fields):
    return await stack.client.post(
        p.launch_path(), json=body(**fields), headers=headers or p.member
    )


# ----------------------------------------------------------------------------- refusals


async def test_every_route_refuses_a_caller_without_a_token(stack: Stack, project) -> None:
    some = uuid.uuid4()
    for method, path in (
        ("POST", project.launch_path()),
        ("GET", f"{project.base}/instances"),
        ("GET", f"{project.base}/instances/{some}"),
        ("PATCH", f"{project.base}/instances/{some}"),
        ("POST", f"{project.base}/instances/{some}/stop"),
    ):
        response = await stack.client.request(method, path, json={})
        assert response.status_code == 401, (method, path, response.text)


async def test_another_tenant_and_another_project_are_404(stack: Stack, project) -> None:
    created = await launch(stack, project)
    assert created.status_code == 201, created.text
    instance = created.json()["id"]
    other_tenant, other_project = await stack.tenant()
    strangers = {
        "another tenant's owner": token(other_tenant, "owner"),
        "a service account of another project": token(
            project.tenant, project=other_project, project_role="admin", service_account=True
        ),
        "a user with a role only in another project": token(
            project.tenant, project=other_project, project_role="admin"
        ),
    }
    for who, headers in strangers.items():
        for method, path, payload in (
            ("POST", project.launch_path(), body()),
            ("GET", f"{project.base}/instances", None),
            ("GET", f"{project.base}/instances/{instance}", None),
            ("PATCH", f"{project.base}/instances/{instance}", {"replicas": 2}),
            ("POST", f"{project.base}/instances/{instance}/stop", None),
        ):
            response = await stack.client.request(method, path, json=payload, headers=headers)
            assert response.status_code == 404, (who, method, path, response.text)
    # the instance id under the stranger's own project is not found either
    response = await stack.client.get(
        f"/v1/apps/tenants/{other_tenant}/projects/{other_project}/instances/{instance}",
        headers=token(other_tenant, "owner"),
    )
    assert response.status_code == 404
    assert stack.commands(instance, "appplatform.replica.stop_requested") == []


async def test_a_viewer_reads_but_cannot_launch_change_or_stop(stack: Stack, project) -> None:
    viewer = token(project.tenant, "viewer")
    project_viewer = token(project.tenant, project=project.project, project_role="viewer")
    created = await launch(stack, project)
    instance = created.json()["id"]
    for headers in (viewer, project_viewer):
        assert (await launch(stack, project, headers=headers)).status_code == 403
        path = f"{project.base}/instances/{instance}"
        assert (
            await stack.client.patch(path, json={"replicas": 3}, headers=headers)
        ).status_code == 403
        assert (await stack.client.post(path + "/stop", headers=headers)).status_code == 403
        assert (await stack.client.get(path, headers=headers)).status_code == 200
        listed = await stack.client.get(f"{project.base}/instances", headers=headers)
        assert [i["id"] for i in listed.json()["items"]] == [instance]
    # a project admin (service account) may launch in its project
    robot = token(project.tenant, project=project.project, project_role="admin",
                  service_account=True)  # fmt: skip
    assert (await launch(stack, project, headers=robot)).status_code == 201


async def test_an_unknown_project_is_404_even_for_the_tenant(stack: Stack, project) -> None:
    path = f"/v1/apps/tenants/{project.tenant}/projects/{uuid.uuid4()}/apps/{project.app}/instances"
    response = await stack.client.post(path, json=body(), headers=token(project.tenant, "owner"))
    assert response.status_code == 404


@pytest.mark.parametrize(
    ("fields", "status", "field"),
    [
        ({"env": {}}, 422, "env.API_KEY"),
        ({"env": {"API_KEY": "k", "NOPE": "x"}}, 422, "env.NOPE"),
        ({"version": "1.2.0"}, 422, "version"),  # not promoted
        ({"version": "9.9.9"}, 422, "version"),
        ({"channel": "staging"}, 422, "channel"),
        ({"resources": {"sku": "a100-40gb"}}, 201, None),
        ({"resources": {"sku": "h200-141gb"}}, 422, "resources.sku"),  # above the range
        ({"resources": {"sku": "tpu"}}, 422, "resources.sku"),
        ({"resources": {"count": 2}}, 422, "resources.count"),
        ({"replicas": 0}, 400, None),
    ],
)
async def test_a_bad_launch_names_its_field(stack: Stack, project, fields, status, field) -> None:
    response = await launch(stack, project, **fields)
    assert response.status_code == status, response.text
    if field is not None:
        assert field in [e["field"] for e in response.json()["errors"]], response.text


async def test_an_unknown_app_is_404(stack: Stack, project) -> None:
    response = await stack.client.post(
        project.launch_path("no-such-app"), json=body(), headers=project.member
    )
    assert response.status_code == 404, response.text


async def test_another_tenants_app_is_404(stack: Stack, project) -> None:
    other, other_project = await stack.tenant()
    response = await stack.client.post(
        f"/v1/apps/tenants/{other}/projects/{other_project}/apps/{project.app}/instances",
        json=body(),
        headers=token(other, "owner"),
    )
    assert response.status_code == 404, response.text


# ----------------------------------------------------------------------------- lifecycle


async def test_the_same_launch_twice_launches_once(stack: Stack, project) -> None:
    key = {"Idempotency-Key": str(uuid.uuid4())}
    payload = body()
    first = await stack.client.post(
        project.launch_path(), json=payload, headers=project.member | key
    )
    again = await stack.client.post(
        project.launch_path(), json=payload, headers=project.member | key
    )
    assert first.status_code == again.status_code == 201
    assert first.json()["id"] == again.json()["id"]
    instance = first.json()["id"]
    for _ in range(3):
        await CONTROLLER.pass_once(stack.client.app.state.runtime.database)
    assert len(stack.commands(instance, "appplatform.replica.requested")) == 1
    taken = await stack.client.post(project.launch_path(), json=payload, headers=project.member)
    assert taken.status_code == 409  # the name is the live instance's


async def test_an_instance_from_launch_to_ready_to_stopped(stack: Stack, project) -> None:
    scope = {"tenant": project.tenant, "project": project.project}
    created = await launch(stack, project)
    assert created.status_code == 201, created.text
    out = created.json()
    instance = out["id"]
    assert out["generation"] == 1 and out["spec"]["version"] == "1.0.0"  # stable's newest
    assert out["spec"]["env"] == {"API_KEY": "k", "MODE": "fast"}
    assert out["status"]["state"] == "provisioning"
    [request] = stack.commands(instance, "appplatform.replica.requested")
    assert request["bundle"]["app"] == project.app and request["bundle"]["version"] == "1.0.0"
    assert request["runtime"]["probe"]["port"] == 8000  # the probe's port name resolved
    assert request["runtime"]["env"] == {"API_KEY": "k", "MODE": "fast"}
    assert request["resources"]["count"] == 1
    first = (request["replica_id"], instance)
    path = f"{project.base}/instances/{instance}"

    async def state_is(expected: str):
        return await stack.until_http(
            lambda: stack.client.get(path, headers=project.member),
            lambda r: r.json()["status"]["state"] == expected,
            what=f"state {expected}",
        )

    await stack.allocation(first, "running", **scope)
    await state_is("starting")
    await stack.allocation(first, "workload_ready", **scope)
    ready = (await state_is("ready")).json()
    conditions = {c["type"]: c for c in ready["status"]["conditions"]}
    assert conditions["Ready"]["status"] == "True"
    assert conditions["Ready"]["observedGeneration"] == 1
    assert ready["status"]["ready_replicas"] == 1

    # scale to 2: generation 2, one more replica; degraded until it is ready
    changed = await stack.client.patch(path, json={"replicas": 2}, headers=project.member)
    assert changed.status_code == 200, changed.text
    assert changed.json()["generation"] == 2
    assert changed.json()["status"]["state"] == "degraded"
    requests = stack.commands(instance, "appplatform.replica.requested")
    assert len(requests) == 2
    second = (requests[1]["replica_id"], instance)
    same = await stack.client.patch(path, json={"replicas": 2}, headers=project.member)
    assert same.json()["generation"] == 2  # the same desired state: no change

    # the first replica's allocation fails under it: replaced by a new replica id
    await stack.allocation(first, "failed", reason="node_lost", **scope)
    await stack.until(
        lambda: len(stack.commands(instance, "appplatform.replica.requested")) == 3,
        what="the replacement",
    )
    third_id = stack.commands(instance, "appplatform.replica.requested")[2]["replica_id"]
    assert third_id not in (first[0], second[0])
    assert stack.sql("SELECT crash_count FROM instances WHERE instance_id = %s", instance) == [(1,)]
    for replica in (second, (third_id, instance)):
        await stack.allocation(replica, "running", **scope)
        await stack.allocation(replica, "workload_ready", **scope)
    await stack.until_http(
        lambda: stack.client.get(path, headers=project.member),
        lambda r: (
            r.json()["status"]["state"] == "ready" and r.json()["status"]["ready_replicas"] == 2
        ),
        what="both ready",
    )

    # stop: both live replicas asked to stop, stopped once gpuaas released them
    stopped = await stack.client.post(path + "/stop", headers=project.member)
    assert stopped.status_code == 202 and stopped.json()["status"]["state"] == "stopping"
    stops = stack.commands(instance, "appplatform.replica.stop_requested")
    assert sorted(s["replica_id"] for s in stops) == sorted([second[0], third_id])
    assert {s["reason"] for s in stops} == {"user_stop"}
    await stack.client.post(path + "/stop", headers=project.member)  # again: nothing new
    assert len(stack.commands(instance, "appplatform.replica.stop_requested")) == 2
    for replica in (second, (third_id, instance)):
        await stack.allocation(replica, "released", **scope)
    final = (await state_is("stopped")).json()
    assert final["status"]["replicas"] == []
    assert stack.instance_events(instance) == [
        "appplatform.instance.created",
        "appplatform.instance.provisioning",
        "appplatform.instance.starting",
        "appplatform.instance.ready",
        "appplatform.instance.updated",
        "appplatform.instance.degraded",
        "appplatform.instance.ready",
        "appplatform.instance.updated",
        "appplatform.instance.stopping",
        "appplatform.instance.stopped",
    ]


async def test_a_rejected_replica_fails_the_instance(stack: Stack, project) -> None:
    scope = {"tenant": project.tenant, "project": project.project}
    created = await launch(stack, project, replicas=2)
    instance = created.json()["id"]
    first, second = stack.commands(instance, "appplatform.replica.requested")
    await stack.allocation((first["replica_id"], instance), "rejected", reason="no_capacity",
                           **scope)  # fmt: skip
    path = f"{project.base}/instances/{instance}"
    failed = await stack.until_http(
        lambda: stack.client.get(path, headers=project.member),
        lambda r: r.json()["status"]["state"] == "failed",
        what="failed",
    )
    assert failed.json()["status"]["reason"] == "allocation_rejected:no_capacity"
    conditions = {c["type"]: c for c in failed.json()["status"]["conditions"]}
    assert conditions["Failed"]["status"] == "True"
    [stop] = stack.commands(instance, "appplatform.replica.stop_requested")
    assert stop["replica_id"] == second["replica_id"]
    # a failed instance is terminal: it takes no more changes
    again = await stack.client.patch(path, json={"replicas": 1}, headers=project.member)
    assert again.status_code == 409
