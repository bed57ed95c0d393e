"""The catalog from registry's events: releases with an app manifest in, the catalog out
(a tenant's own apps and the public ones; promoted, unyanked versions per channel; stale
and repeated events change nothing; an invalid manifest never shows)."""

from __future__ import annotations

import uuid

import pytest

from .conftest import PLATFORM, Release, Stack, manifest, token

pytestmark = pytest.mark.integration


def app_name() -> str:
    return f"app-{uuid.uuid4().hex[:8]}"


async def catalog(stack: Stack, headers, **params):
    response = await stack.client.get("/v1/apps/catalog", params=params, headers=headers)
    assert response.status_code == 200, response.text
    return response.json()["items"]


async def until_versions(stack: Stack, headers, app: str, channel: str, versions, **params):
    def check(response) -> bool:
        items = [i for i in response.json()["items"] if i["app"] == app]
        if not versions:
            return not items
        for item in items:
            for c in item["channels"]:
                if c["channel"] == channel:
                    return [v["version"] for v in c["versions"]] == list(versions)
        return False

    await stack.until_http(
        lambda: stack.client.get("/v1/apps/catalog", params=params, headers=headers),
        check,
        what=f"{app} {channel} = {versions}",
    )


async def test_no_token_is_401(stack: Stack) -> None:
    response = await stack.client.get("/v1/apps/catalog")
    assert response.status_code == 401


async def test_promoted_releases_show_with_their_manifest_summary(stack: Stack) -> None:
    tenant, project = await stack.tenant()
    app = app_name()
    first = Release(tenant, app, "1.0.0", manifest(app, "1.0.0"), project=project)
    second = Release(tenant, app, "1.1.0", manifest(app, "1.1.0"), project=project)
    await stack.release(first, 1)
    await stack.release(second, 1)
    await stack.release(first, 2, channels=["dev"])
    await stack.release(second, 2, channels=["dev"])
    await stack.release(first, 3, channels=["dev", "stable"])
    viewer = token(tenant, "viewer")
    await until_versions(stack, viewer, app, "dev", ["1.1.0", "1.0.0"])
    await until_versions(stack, viewer, app, "stable", ["1.0.0"])
    [item] = [i for i in await catalog(stack, viewer) if i["app"] == app]
    assert item["namespace"] == "tenant" and item["tenant_id"] == str(tenant)
    assert item["description"] == f"the {app} app"
    channels = {c["channel"]: c["versions"] for c in item["channels"]}
    assert [v["version"] for v in channels["stable"]] == ["1.0.0"]
    summary = channels["stable"][0]["manifest"]
    assert summary["ports"] == [{"name": "http", "port": 8000, "protocol": "http", "expose": True}]
    assert summary["resources"]["gpu_memory_gb"] == {"min": 10, "max": 80}
    assert summary["env_required_at_launch"] == [
        {"name": "API_KEY", "description": "the app's key"}
    ]
    assert channels["stable"][0]["manifest_digest"] == first.digest
    # filters: the channel, the name, the namespace
    assert [i["app"] for i in await catalog(stack, viewer, channel="stable", q=app)] == [app]
    assert await catalog(stack, viewer, q=app, namespace="platform") == []
    assert await catalog(stack, viewer, q="no-such-" + app) == []


async def test_another_tenant_never_sees_them_and_everyone_sees_public_apps(stack: Stack) -> None:
    tenant, project = await stack.tenant()
    other, _ = await stack.tenant()
    private, public = app_name(), app_name()
    mine = Release(tenant, private, "2.0.0", manifest(private, "2.0.0"), project=project)
    shared = Release(PLATFORM, public, "0.1.0", manifest(public, "0.1.0"))
    await stack.release(mine, 2, channels=["stable"])
    await stack.release(shared, 2, channels=["stable"])
    await until_versions(stack, token(tenant, "member"), private, "stable", ["2.0.0"])
    await until_versions(stack, token(other, "member"), public, "stable", ["0.1.0"])
    seen_by_other = {i["app"] for i in await catalog(stack, token(other, "member"))}
    assert public in seen_by_other and private not in seen_by_other
    [item] = [i for i in await catalog(stack, token(tenant, "member")) if i["app"] == public]
    assert item["namespace"] == "platform" and item["tenant_id"] == str(PLATFORM)
    assert [i["app"] for i in await catalog(stack, token(tenant, "member"), namespace="tenant",
                                            q=public)] == []  # fmt: skip


async def test_yanked_and_unpromoted_versions_are_hidden(stack: Stack) -> None:
    tenant, project = await stack.tenant()
    app = app_name()
    kept = Release(tenant, app, "1.0.0", manifest(app, "1.0.0"), project=project)
    yanked = Release(tenant, app, "1.0.1", manifest(app, "1.0.1"), project=project)
    draft = Release(tenant, app, "1.0.2", manifest(app, "1.0.2"), project=project)
    await stack.release(kept, 2, channels=["stable"])
    await stack.release(yanked, 2, channels=["stable"])
    await stack.release(draft, 1)
    headers = token(tenant, "member")
    await until_versions(stack, headers, app, "stable", ["1.0.1", "1.0.0"])
    await stack.release(yanked, 3, channels=[], yanked=True)
    await until_versions(stack, headers, app, "stable", ["1.0.0"])
    assert stack.sql(
        "SELECT yanked, sequence FROM releases WHERE version_id = %s", yanked.version_id
    ) == [(True, 3)]


async def test_a_stale_or_repeated_event_changes_nothing(stack: Stack) -> None:
    tenant, project = await stack.tenant()
    app = app_name()
    release = Release(tenant, app, "3.0.0", manifest(app, "3.0.0"), project=project)
    headers = token(tenant, "member")
    await stack.consumed(
        await stack.release(release, 4, channels=[], yanked=True),
        await stack.release(release, 3, channels=["stable"]),  # older, delivered late
        await stack.release(release, 4, channels=[], yanked=True),  # again
    )
    await until_versions(stack, headers, app, "stable", [])
    assert stack.sql(
        "SELECT yanked, sequence FROM releases WHERE version_id = %s", release.version_id
    ) == [(True, 4)]


async def test_a_release_with_an_invalid_or_no_manifest_never_shows(stack: Stack) -> None:
    tenant, project = await stack.tenant()
    app = app_name()
    bad = manifest(app, "1.0.0", ports=[{"name": "http", "port": 70000}])
    invalid = Release(tenant, app, "1.0.0", bad, project=project)
    other_app = Release(tenant, app, "1.0.1", manifest("someone-else", "1.0.1"), project=project)
    not_an_app = Release(tenant, app, "1.0.2", None, project=project)
    good = Release(tenant, app, "1.0.3", manifest(app, "1.0.3"), project=project)
    await stack.consumed(
        *[
            await stack.release(release, 2, channels=["stable"])
            for release in (invalid, other_app, not_an_app, good)
        ]
    )
    headers = token(tenant, "member")
    await until_versions(stack, headers, app, "stable", ["1.0.3"])
    errors = dict(
        stack.sql(
            "SELECT version, manifest_error FROM releases WHERE app = %s AND tenant_id = %s",
            app,
            tenant,
        )
    )
    assert "ports[0].port: must be <= 65535" in errors["1.0.0"]
    assert errors["1.0.1"].startswith("name: 'someone-else' is not the release's app")
    assert "1.0.2" not in errors  # no manifest: not an app, not kept
    assert errors["1.0.3"] is None
