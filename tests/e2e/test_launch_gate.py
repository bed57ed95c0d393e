"""The launch gate on the running fleet, through the gateway: a launch that names a bundle
is refused, 422 problem+json of type bundle-<reason> naming the field `bundle`, unless
registry's release of it is signed by a key the tenant trusts now, untampered, promoted to
the project's required channel and not yanked; gpuaas decides from its projection of
registry's events. The accepted launch carries the bundle to the node, whose agent verifies
the signatures again before it runs it (the allocation reaches running)."""

import base64
import datetime as dt
import time
import uuid

import httpx
import pytest

from gpucloud_trust import bundle as bundles
from gpucloud_trust import intoto
from gpucloud_trust.keys import SigningKey

from .conftest import bearer, create_app, gpuaas_sees_balance, idempotency_key, sign_up, until

pytestmark = pytest.mark.e2e
PASSWORD = "gate-" + uuid.uuid4().hex + "Aa1!"
APP = "svc"
PROBLEMS = "https://gpucloud.dev/problems/"


class Publisher:
    def __init__(self, gateway: httpx.Client, tenant: str, project: str, auth, tmp_path):
        self.gateway, self.tenant, self.auth, self.tmp = gateway, tenant, auth, tmp_path
        self.base = f"/v1/registry/tenants/{tenant}/projects/{project}/apps/{APP}"

    def trust(self, signer: SigningKey) -> str:
        r = self.gateway.post(
            f"/v1/registry/tenants/{self.tenant}/keys",
            json={"public_key": signer.public.to_pem(), "name": f"k-{uuid.uuid4().hex[:6]}"},
            headers=self.auth | idempotency_key(),
        )
        assert r.status_code == 201, r.text
        return r.json()["id"]

    def publish(self, version: str) -> str:
        source = self.tmp / version / "src"
        source.mkdir(parents=True)
        (source / "run.sh").write_text(f"#!/bin/sh\necho {version}\n")
        built = bundles.build(source, self.tmp / version / "layout", config={"v": version})
        for blob in built.manifest.blobs:
            r = self.gateway.put(
                f"{self.base}/blobs/{blob.digest}",
                content=built.blob_path(blob.digest).read_bytes(),
                headers=self.auth,
            )
            assert r.status_code == 201, r.text
        manifest = base64.b64encode(built.manifest.raw).decode()
        r = self.gateway.post(
            f"{self.base}/versions",
            json={"version": version, "manifest": manifest},
            headers=self.auth | idempotency_key(),
        )
        assert r.status_code == 201, r.text
        return built.digest

    def sign(self, version: str, digest: str, signer: SigningKey) -> httpx.Response:
        envelope = intoto.release_statement(
            digest, tenant=self.tenant, app=APP, version=version
        ).sign([signer])
        return self.gateway.post(
            f"{self.base}/versions/{version}/statements",
            json={"envelope": envelope.to_json().decode()},
            headers=self.auth | idempotency_key(),
        )

    def promote(self, version: str, *channels: str) -> None:
        for channel in channels:
            r = self.gateway.post(
                f"{self.base}/versions/{version}/promotions",
                json={"channel": channel},
                headers=self.auth | idempotency_key(),
            )
            assert r.status_code == 201, r.text


@pytest.fixture(scope="module")
def stage(fleet, tmp_path_factory):
    """One tenant with a release per case (each launch names it)."""
    with fleet.client() as gateway:
        yield _stage(fleet, gateway, tmp_path_factory)


def _stage(fleet, gateway, tmp_path_factory):
    signed_up, owner = sign_up(gateway, "gate", PASSWORD)
    tenant, project = signed_up["tenant"]["id"], signed_up["project"]["id"]
    auth = bearer(owner.enroll(gateway, tenant))
    namespace = f"/v1/registry/tenants/{tenant}/projects/{project}"
    assert create_app(gateway, namespace, APP, auth).status_code == 201
    pub = Publisher(gateway, tenant, project, auth, tmp_path_factory.mktemp("gate"))
    signer, doomed, stranger = SigningKey.generate(), SigningKey.generate(), SigningKey.generate()
    pub.trust(signer)
    doomed_id = pub.trust(doomed)
    cases: dict[str, dict] = {}

    def case(name: str, version: str, digest: str, **extra) -> None:
        cases[name] = {"app": APP, "version": version, "digest": digest, **extra}

    case("unsigned", "1.0.1", pub.publish("1.0.1"))

    d = pub.publish("1.0.2")
    refused = pub.sign("1.0.2", d, stranger)  # registry refuses an untrusted signer...
    assert refused.status_code == 422, refused.text
    case("wrong-key", "1.0.2", d)  # ...so the release has no signature gpuaas could count

    d = pub.publish("1.0.3")
    assert pub.sign("1.0.3", d, signer).status_code == 201
    pub.promote("1.0.3", "dev", "staging", "stable")
    case("tampered", "1.0.3", "sha256:" + ("0" * 63) + ("1" if d[-1] != "1" else "2"))

    d = pub.publish("1.0.4")
    assert pub.sign("1.0.4", d, signer).status_code == 201
    pub.promote("1.0.4", "dev")
    case("unpromoted", "1.0.4", d)

    d = pub.publish("1.0.5")
    assert pub.sign("1.0.5", d, signer).status_code == 201
    pub.promote("1.0.5", "dev")
    skipped = gateway.post(
        f"{pub.base}/versions/1.0.5/promotions", json={"channel": "stable"},
        headers=auth | idempotency_key(),
    )  # fmt: skip
    assert skipped.status_code == 409, skipped.text  # registry: no skipping channels
    case("skipped-channel", "1.0.5", d)

    d = pub.publish("1.0.6")
    assert pub.sign("1.0.6", d, doomed).status_code == 201
    pub.promote("1.0.6", "dev", "staging", "stable")
    revoked = gateway.post(
        f"/v1/registry/tenants/{tenant}/keys/{doomed_id}/revoke",
        json={"reason": "leaked"}, headers=auth | idempotency_key(),
    )  # fmt: skip
    assert revoked.status_code == 200, revoked.text
    case("revoked-key", "1.0.6", d)

    d = pub.publish("1.0.7")
    assert pub.sign("1.0.7", d, signer).status_code == 201
    pub.promote("1.0.7", "dev", "staging", "stable")
    yanked = gateway.post(
        f"{pub.base}/versions/1.0.7/yank", json={"reason": "bad build"},
        headers=auth | idempotency_key(),
    )  # fmt: skip
    assert yanked.status_code == 200, yanked.text
    case("yanked", "1.0.7", d)

    d = pub.publish("1.1.0")
    assert pub.sign("1.1.0", d, signer).status_code == 201
    pub.promote("1.1.0", "dev", "staging", "stable")
    case("accepted", "1.1.0", d)

    case("unknown", "9.9.9", d)
    _pay(gateway, auth, tenant)
    # gpuaas's money gate fails closed: the accepted launches wait until it has the top-up.
    until("gpuaas sees the payment", gpuaas_sees_balance(fleet, tenant, 50_000_000))
    return gateway, tenant, project, auth, cases, pub, signer


def _pay(gateway, auth, tenant: str, micros: int = 50_000_000) -> None:
    """A sandbox payment, settled, so the accepted launches pass the balance gate."""
    key = idempotency_key()
    path = f"/v1/billing/tenants/{tenant}/payments"

    def pay():
        r = gateway.post(path, json={"amount_micros": micros}, headers=auth | key)
        return r.json() if r.status_code in (200, 201) else None

    payment = until("payment accepted", pay)
    until(
        "payment settled",
        lambda: gateway.get(f"{path}/{payment['id']}", headers=auth).json()["status"] == "settled",
    )


def _launch(gateway, tenant, project, auth, bundle) -> httpx.Response:
    return gateway.post(
        f"/v1/gpu/tenants/{tenant}/projects/{project}/allocations",
        json={"sku": "h100-80gb", "mig_profile": "1g.10gb", "count": 1, "bundle": bundle},
        headers=auth | idempotency_key(),
    )


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("unknown", "unknown-release"),
        ("unsigned", "unsigned"),
        ("wrong-key", "unsigned"),
        ("tampered", "manifest-digest"),
        ("unpromoted", "unpromoted"),
        ("skipped-channel", "unpromoted"),
        ("revoked-key", "revoked"),
        ("yanked", "yanked"),
    ],
)
def test_a_launch_naming_a_bad_bundle_is_refused_with_its_reason(stage, name, reason):
    gateway, tenant, project, auth, cases, *_ = stage
    seen: list[str] = []

    def refused_for_the_reason():
        r = _launch(gateway, tenant, project, auth, cases[name])
        assert r.status_code != 201, f"{name}: launched: {r.text}"
        assert r.status_code < 500, r.text
        if r.status_code == 404:  # gpuaas has not projected the sign-up's project yet
            return None
        assert r.status_code == 422, r.text
        assert r.headers["content-type"].startswith("application/problem+json")
        problem = r.json()
        seen.append(problem["errors"][0]["message"])
        if problem["errors"][0] != {"field": "bundle", "message": reason}:
            return None  # the projection may still be catching up with registry's events
        assert problem["type"] == PROBLEMS + "bundle-" + reason
        return problem

    until(f"{name} refused as {reason} (saw {seen})", refused_for_the_reason, within=30.0)
    listed = gateway.get(f"/v1/gpu/tenants/{tenant}/projects/{project}/allocations", headers=auth)
    assert all(a["bundle"] is None or a["bundle"]["version"] == "1.1.0"
               for a in listed.json()["items"])  # fmt: skip


def test_a_signed_promoted_bundle_launches_and_runs(stage):
    gateway, tenant, project, auth, cases, *_ = stage
    wanted = cases["accepted"]

    def launched():
        r = _launch(gateway, tenant, project, auth, wanted)
        # 404: the project not projected yet; 402: the payment not seen yet; 422: the
        # release's promotion events not projected yet
        assert r.status_code in (201, 402, 404, 422), r.text
        return r.json() if r.status_code == 201 else None

    allocation = until("the signed, promoted bundle launches", launched, within=30.0)
    assert allocation["bundle"] == {
        "tenant_id": tenant, "app": APP, "version": "1.1.0", "digest": wanted["digest"],
        "channel": "stable", "yanked": False, "refusal": None,
    }  # fmt: skip
    url = f"/v1/gpu/tenants/{tenant}/projects/{project}/allocations/{allocation['id']}"

    def running():
        state = gateway.get(url, headers=auth).json()
        assert state["state"] not in ("failed", "releasing", "rejected"), state
        return state if state["state"] == "running" else None

    until("the node agent verified the bundle and runs it", running, within=30.0)
    gateway.post(f"{url}/release", headers=auth)


def test_the_project_can_require_a_lower_channel(stage):
    gateway, tenant, project, auth, cases, *_ = stage
    policy = f"/v1/gpu/tenants/{tenant}/projects/{project}/launch-policy"
    assert gateway.get(policy, headers=auth).json()["required_channel"] == "stable"
    bad = gateway.put(policy, json={"required_channel": "prod"}, headers=auth)
    assert bad.status_code in (400, 422), bad.text
    assert "required_channel" in bad.text
    set_ = gateway.put(policy, json={"required_channel": "dev"}, headers=auth)
    assert set_.status_code == 200, set_.text
    try:
        r = until(
            "a dev-promoted release launches in a dev project",
            lambda: (
                (x := _launch(gateway, tenant, project, auth, cases["unpromoted"])).status_code
                == 201
                and x
            ),
            within=30.0,
        )
        gateway.post(
            f"/v1/gpu/tenants/{tenant}/projects/{project}/allocations/{r.json()['id']}/release",
            headers=auth,
        )
    finally:
        gateway.put(policy, json={"required_channel": "stable"}, headers=auth)


def _running_release(stage, version: str, signer: SigningKey) -> tuple[dict, dict, str]:
    """Publish `version` signed by `signer`, promote it to stable, launch it and wait until
    it runs: the bundle named, the allocation as created, and its URL."""
    gateway, tenant, project, auth, _, pub, _ = stage
    digest = pub.publish(version)
    assert pub.sign(version, digest, signer).status_code == 201
    pub.promote(version, "dev", "staging", "stable")
    bundle = {"app": APP, "version": version, "digest": digest}

    def launched():
        r = _launch(gateway, tenant, project, auth, bundle)
        assert r.status_code in (201, 402, 404, 422), r.text  # 422: promotion not projected yet
        return r.json() if r.status_code == 201 else None

    allocation = until(f"{version} launches", launched, within=30.0)
    url = f"/v1/gpu/tenants/{tenant}/projects/{project}/allocations/{allocation['id']}"
    until(f"{version} runs", lambda: gateway.get(url, headers=auth).json()["state"] == "running")
    return bundle, allocation, url


def test_a_running_allocation_whose_release_is_yanked_is_reported_and_keeps_running(stage):
    """A yank refuses new launches; what already runs is not killed by it (the tenant
    decides), but every read of the allocation says so, until it is released."""
    gateway, tenant, project, auth, _, pub, signer = stage
    bundle, allocation, url = _running_release(stage, "1.2.0", signer)
    assert gateway.get(url, headers=auth).json()["bundle"]["yanked"] is False

    yanked = gateway.post(
        f"{pub.base}/versions/1.2.0/yank", json={"reason": "bad build"},
        headers=auth | idempotency_key(),
    )  # fmt: skip
    assert yanked.status_code == 200, yanked.text
    seen = until(
        "the yank reported on the running allocation",
        lambda: (a := gateway.get(url, headers=auth).json())["bundle"]["yanked"] and a,
    )
    assert seen["state"] == "running"
    listed = gateway.get(f"/v1/gpu/tenants/{tenant}/projects/{project}/allocations", headers=auth)
    [mine] = [a for a in listed.json()["items"] if a["id"] == allocation["id"]]
    assert mine["bundle"]["yanked"] is True and mine["bundle"]["refusal"] == "yanked"
    # and no new launch of it
    refused = _launch(gateway, tenant, project, auth, bundle)
    assert refused.status_code == 422 and refused.json()["errors"][0]["message"] == "yanked"
    released = gateway.post(f"{url}/release", headers=auth)
    assert released.status_code in (200, 202), released.text
    assert released.json()["bundle"]["yanked"] is True


def test_a_running_allocation_whose_signer_key_is_revoked_is_reported_and_keeps_running(stage):
    """Revoking the only key that signed a release after the launch: new launches of it are
    refused (`revoked`), what runs keeps running, and every read says why it would not
    launch again."""
    gateway, tenant, project, auth, _, pub, _ = stage
    late = SigningKey.generate()
    late_id = pub.trust(late)
    bundle, allocation, url = _running_release(stage, "1.3.0", late)
    assert gateway.get(url, headers=auth).json()["bundle"]["refusal"] is None

    revoked = gateway.post(
        f"/v1/registry/tenants/{tenant}/keys/{late_id}/revoke",
        json={"reason": "leaked"}, headers=auth | idempotency_key(),
    )  # fmt: skip
    assert revoked.status_code == 200, revoked.text
    seen = until(
        "the revocation reported on the running allocation",
        lambda: (a := gateway.get(url, headers=auth).json())["bundle"]["refusal"] and a,
    )
    assert seen["bundle"]["refusal"] == "revoked"
    assert seen["bundle"]["yanked"] is False
    assert seen["state"] == "running"
    listed = gateway.get(f"/v1/gpu/tenants/{tenant}/projects/{project}/allocations", headers=auth)
    [mine] = [a for a in listed.json()["items"] if a["id"] == allocation["id"]]
    assert mine["bundle"]["refusal"] == "revoked"
    refused = _launch(gateway, tenant, project, auth, bundle)
    assert refused.status_code == 422 and refused.json()["errors"][0]["message"] == "revoked"
    released = gateway.post(f"{url}/release", headers=auth)
    assert released.status_code in (200, 202), released.text
    assert released.json()["bundle"]["refusal"] == "revoked"


def test_a_release_whose_only_signer_key_has_expired_is_refused(stage):
    """Trust metadata expires: once the tenant's trust in the key that signed a release
    ends, new launches of it are refused `expired` (renewing the key would restore it)."""
    gateway, tenant, project, auth, _, pub, _ = stage
    brief = SigningKey.generate()
    brief_id = pub.trust(brief)
    digest = pub.publish("1.4.0")
    assert pub.sign("1.4.0", digest, brief).status_code == 201
    pub.promote("1.4.0", "dev", "staging", "stable")
    ends = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=2)
    renewed = gateway.post(
        f"/v1/registry/tenants/{tenant}/keys/{brief_id}/renew",
        json={"expires_at": ends.isoformat()}, headers=auth | idempotency_key(),
    )  # fmt: skip
    assert renewed.status_code == 200, renewed.text
    time.sleep(max(0.0, (ends - dt.datetime.now(dt.UTC)).total_seconds()) + 0.5)
    bundle = {"app": APP, "version": "1.4.0", "digest": digest}

    def refused():
        r = _launch(gateway, tenant, project, auth, bundle)
        assert r.status_code in (402, 404, 422), r.text  # never launched
        reason = r.json()["errors"][0]["message"] if r.status_code == 422 else None
        return reason if reason == "expired" else None  # unpromoted: not projected yet

    assert until("the expired signer refuses the launch", refused, within=30.0) == "expired"
