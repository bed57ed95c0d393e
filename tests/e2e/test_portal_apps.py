"""The portal's apps pages in a real browser on the real fleet (issue 18 with issue 14's
appplatform): an owner publishes and promotes a tiny app with the CLI (in-process), then in
the browser finds it in the catalog, launches it (a variable required at launch left out:
appplatform's 422 at its field), watches the instance reach ready on its page without a
reload, finds it in the instances list and stops it. Another tenant's instance URL is the
404 page; a billing-only member has no Apps link and gets the 403 page. Every page is
screenshotted and checked with axe-core (no serious or critical violation, no CSP report),
with test_portal.py's browser and helpers."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from gpucloud_cli.main import cli as gpucloud_main

from . import test_portal
from .conftest import Person, invite, sign_up, until
from .test_cli import Cli
from .test_portal import Visit, sign_in, visit

# test_portal.py's module fixtures: one browser for this module too, and its report line
browser = test_portal.browser
report = test_portal.report

pytestmark = pytest.mark.e2e
PASSWORD = "papps-" + uuid.uuid4().hex + "Aa1!"
REQUIRED_ENV = 'GREETING: {required_at_launch: true, description: "what the app answers"}'


@pytest.fixture(scope="module")
def developer(fleet, tmp_path_factory) -> dict[str, Any]:
    """A tenant whose owner (TOTP enrolled: trusting a publisher key needs a second factor)
    published `hello` 0.1.0 with GREETING required at launch and promoted it to stable."""
    with fleet.client() as gateway:
        body, owner = sign_up(gateway, "papps", PASSWORD)
        owner.activate_totp(gateway, body["tenant"]["slug"])
    folder = tmp_path_factory.mktemp("papps")
    cli = Cli(folder / "cli", fleet.gateway)
    cli("login", "--email", owner.email, input=f"{PASSWORD}\n{owner.next_code()}\n")

    def paid() -> bool:  # billing may not know the tenant yet
        result = cli.runner.invoke(gpucloud_main, ["top-up", "5.00", "-y"], env=cli.env)
        return result.exit_code == 0

    until("a top-up", paid, within=30, every=0.5)
    app = folder / "hello"
    cli.json("app", "init", "hello", "--dir", str(app))
    manifest = app / "gpucloud.yaml"
    text = manifest.read_text()
    assert "GREETING: {value: hello}" in text
    manifest.write_text(text.replace("GREETING: {value: hello}", REQUIRED_ENV))
    key = folder / "publisher.key"
    cli.json("app", "key", "create", "--out", str(key))
    cli.json("app", "publish", str(app), "--key", str(key))
    for channel in ("dev", "staging", "stable"):
        cli.json("app", "promote", "hello", "0.1.0", "--to", channel)
    return {"owner": owner, "body": body}


@pytest.fixture(scope="module")
def dev_visit(browser, fleet, report, developer) -> Iterator[Visit]:
    v = visit(browser, fleet, report, "apps-owner")
    sign_in(v, developer["owner"])
    # a recovery code: the enrollment and the CLI's login spent this window's TOTP steps
    v.page.fill("#f-otp", developer["owner"].recovery_codes.pop())
    v.submit()
    assert v.page.locator("h1").text_content() == "Dashboard"
    yield v
    v.context.close()


class TestApps:
    def test_catalog_launch_refused_at_the_field_then_ready_listed_and_stopped(
        self, dev_visit: Visit, developer
    ):
        v, page = dev_visit, dev_visit.page
        assert page.locator("header nav a", has_text="Apps").count() == 1

        def listed() -> bool:  # appplatform's catalog learns the release from registry
            v.page.goto("/apps?q=hello")
            return page.locator("#apps-catalog tr[data-app=hello]").count() == 1

        until("the catalog shows hello", listed, within=30, every=0.5)
        v.snap("apps-catalog")
        row = page.locator("#apps-catalog tr[data-app=hello]")
        assert "stable 0.1.0" in row.text_content() and "GREETING" in row.text_content()
        with page.expect_navigation():
            row.get_by_role("link", name="Launch hello").click()
        v.snap("app-launch")

        # GREETING is required at launch: left empty, appplatform's 422 lands at its field.
        page.fill("#f-name", "hello-web")
        v.submit()
        assert "/apps/launch" in page.url
        assert page.locator("[id='f-env.GREETING'][aria-invalid=true]").count() == 1
        assert page.locator("[id='e-env.GREETING']").is_visible()
        v.snap("app-launch-refused")

        page.fill("[id='f-env.GREETING']", "hi from the portal")
        v.submit()
        assert "/instances/" in page.url
        v.snap("instance-launched")
        # The status panel is polled: the instance reaches ready without a reload.
        page.locator("#instance-state[data-state=ready]").wait_for(timeout=120_000)
        assert page.locator("#instance-replicas").text_content() == "1 of 1 ready"
        v.snap("instance-ready")
        instance_href = page.url

        v.go("/instances", "instances")
        row = page.locator("#instances tbody tr", has_text="hello-web")
        assert "ready" in row.text_content() and "1/1" in row.text_content()

        v.go(instance_href, "instance")
        v.submit("#stop-instance button")
        page.locator("#instance-state[data-state=stopped]").wait_for(timeout=60_000)
        assert page.locator("#stop-instance").count() == 0
        v.snap("instance-stopped")
        developer["instance_href"] = instance_href

    def test_another_tenants_instance_is_a_404_page_and_billing_gets_403(
        self,
        browser,
        fleet,
        report,
        developer,
    ):
        href = developer.get("instance_href")
        assert href, "the launch test runs first"
        project = developer["body"]["project"]["id"]
        with fleet.client() as gateway:
            _, stranger = sign_up(gateway, "papps-other", "Other-" + uuid.uuid4().hex)
            payer = Person("papps-payer", "Payer-" + uuid.uuid4().hex)
            invite(
                gateway, f"/v1/iam/tenants/{developer['body']['tenant']['id']}", payer,
                "billing", fleet.operator | {"Idempotency-Key": str(uuid.uuid4())},
            )  # fmt: skip
        other = visit(browser, fleet, report, "apps-other-tenant")
        try:
            sign_in(other, stranger)
            other.go(href, "instance-not-found", status=404)
            other.go(f"/instances?project={project}", "instances-not-found", status=404)
        finally:
            other.context.close()
        v = visit(browser, fleet, report, "apps-billing")
        try:
            sign_in(v, payer)
            nav = v.page.locator("header nav")
            assert nav.locator("a", has_text="Apps").count() == 0
            assert nav.locator("a", has_text="Instances").count() == 0
            v.go(href, "instance-refused", status=403)
        finally:
            v.context.close()
