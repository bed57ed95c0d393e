"""The portal in a real browser (Debian's Chromium driven by Playwright) on the real fleet,
through the gateway at `/`, as a person uses it: sign in, enroll TOTP, top up through the
sandbox provider, launch a MIG slice and watch it reach running without a reload, open its
terminal (type, resize, reload, a dropped connection, exit), release it, see the charge and
the statement line; then step-up, form errors at their fields, the tenant's audit trail,
another tenant's URLs as 404 pages, a lower role's 403 pages, CSRF refusals and the operator
pages.

Every page visited is screenshotted under test-artifacts/portal/ (git-ignored; the path is
printed) and checked with axe-core (axe-playwright-python): no serious or critical
violation. One browser for the module; the tests of one person share their signed-in
context, so they run in file order.
"""

from __future__ import annotations

import concurrent.futures
import datetime as dt
import re
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyotp
import pytest

from .conftest import Person, invite, sign_up, until

pytestmark = pytest.mark.e2e

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "portal"
MIG = ("h100-80gb", "1g.10gb", "mig:h100-80gb:1g.10gb")
SERIOUS = ("serious", "critical")


class Visit:
    """One browser context (one person): every page it lands on is screenshotted and
    checked for accessibility."""

    def __init__(self, context: Any, name: str, axe: Any) -> None:
        self.context, self.axe = context, axe
        self.page = context.new_page()
        # The pages run under a CSP without inline script or eval: a violation is a bug.
        self.console_errors: list[str] = []
        self.page.on(
            "console",
            lambda m: self.console_errors.append(m.text) if m.type == "error" else None,
        )
        self.folder = ARTIFACTS / name
        self.folder.mkdir(parents=True, exist_ok=True)
        self.count = 0
        self.checked: list[str] = []

    def snap(self, label: str) -> None:
        self.count += 1
        self.page.screenshot(
            path=str(self.folder / f"{self.count:02d}-{label}.png"), full_page=True
        )
        results = self.axe.run(self.page)
        bad = [
            f"{v['id']} ({v['impact']}): {v['help']} at {[n['target'] for n in v['nodes']][:3]}"
            for v in results.response["violations"]
            if v["impact"] in SERIOUS
        ]
        assert not bad, f"axe on {self.page.url}: {bad}"
        refused = [e for e in self.console_errors if "Content Security Policy" in e]
        assert not refused, f"CSP violations on {self.page.url}: {refused}"
        self.checked.append(self.page.url)

    def go(self, path: str, label: str, status: int = 200) -> None:
        response = self.page.goto(path)
        assert response is not None and response.status == status, (path, response.status)
        self.snap(label)

    def submit(self, selector: str = "main form button[type=submit]") -> None:
        with self.page.expect_navigation():
            self.page.locator(selector).last.click()


@pytest.fixture(scope="module")
def browser(fleet) -> Iterator[Any]:
    from axe_playwright_python.sync_playwright import Axe
    from playwright.sync_api import sync_playwright

    from devstack import browser as chromium

    with sync_playwright() as playwright:
        launched = chromium.launch(playwright)
        launched.axe = Axe()
        yield launched
        launched.close()


@pytest.fixture(scope="module")
def report(request) -> Iterator[list[Visit]]:
    visits: list[Visit] = []
    yield visits
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    pages = sum(len(v.checked) for v in visits)
    line = f"portal screenshots: {ARTIFACTS} ({pages} pages, axe-core: no serious/critical)"
    if reporter is not None:
        reporter.write_line(line)
    else:
        print(line)


def visit(browser, fleet, report: list[Visit], name: str) -> Visit:
    context = browser.new_context(base_url=fleet.gateway, viewport={"width": 1200, "height": 900})
    v = Visit(context, name, browser.axe)
    report.append(v)
    return v


@pytest.fixture(scope="module")
def owner(fleet) -> tuple[dict[str, Any], Person]:
    with fleet.client() as gateway:
        return sign_up(gateway, "portal", "Portal-" + uuid.uuid4().hex)


@pytest.fixture(scope="module")
def me(browser, fleet, report, owner) -> Iterator[Visit]:
    v = visit(browser, fleet, report, "owner")
    yield v
    v.context.close()


def me_email(v: Visit) -> str:
    return v.page.locator("header .who span").text_content().split(" · ")[0]


def sign_in(v: Visit, person: Person, tenant_slug: str | None = None) -> None:
    v.go("/", "sign-in")  # signed out: the dashboard sends to the sign-in page
    assert v.page.url.endswith("/sign-in?next=/")
    v.page.fill("#f-email", person.email)
    v.page.fill("#f-password", person.password)
    if tenant_slug:
        v.page.fill("#f-tenant", tenant_slug)
    v.submit()


# A form drawn earlier, put back on the page: its action and fields, built with the DOM
# (not pasted HTML: the harness leaves style attributes on it, which the CSP refuses).
STALE_FORM = """(section, form) => {
  const f = Object.assign(document.createElement("form"),
    {method: "post", action: form.action, id: "stale-open-terminal"});
  for (const [name, value] of form.fields) {
    f.append(Object.assign(document.createElement("input"), {type: "hidden", name, value}));
  }
  f.append(Object.assign(document.createElement("button"),
    {type: "submit", textContent: "Open terminal"}));
  section.append(f);
}"""


def screen_text(v: Visit) -> str:
    """What the xterm screen shows (its DOM renderer draws one row element per line)."""
    return v.page.locator("#term-screen .xterm-rows").inner_text()


def on_screen(v: Visit, pattern: str, within: float = 20) -> re.Match[str]:
    return until(
        f"{pattern!r} on the terminal screen",
        lambda: re.search(pattern, screen_text(v), re.M),
        within=within,
        every=0.2,
    )


def type_line(v: Visit, line: str) -> None:
    v.page.keyboard.type(line)
    v.page.keyboard.press("Enter")


def terminal_open(v: Visit, within: float = 30) -> None:
    v.page.locator("#term-screen[data-state=open]").wait_for(timeout=within * 1000)


def restart_in_the_background(name: str) -> None:
    """devstack's restart runs its own event loop, which Playwright's sync API (an event
    loop in this thread) does not allow here: it runs in a thread."""
    from devstack import stack

    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        pool.submit(stack.restart, name).result()


def use_the_terminal(me: Visit) -> str:
    """Open the running allocation's terminal, type, resize, reload, lose the connection,
    exit; the connect token is in no URL, page or log. The allocation page's URL, back."""
    page = me.page
    sockets: list[str] = []
    page.on("websocket", lambda ws: sockets.append(ws.url))
    with page.expect_response(lambda r: r.url.endswith("/attach")) as attached:
        me.submit("#open-terminal button")
    token = attached.value.json()["token"]
    assert "?terminal=" in page.url and token not in page.url
    terminal_open(me)
    me.snap("terminal")
    screen = page.locator("#term-screen")
    screen.click()
    type_line(me, "echo hi-$RANDOM")
    on_screen(me, r"^hi-\d+\s*$")
    # The shell's size is the screen's; a narrower window fits fewer columns and the shell
    # is told (resize -> SIGWINCH).
    cols, rows = screen.get_attribute("data-cols"), screen.get_attribute("data-rows")
    type_line(me, "stty size")
    on_screen(me, rf"^{rows} {cols}\s*$")
    page.set_viewport_size({"width": 760, "height": 900})
    # polled from here: wait_for_function's string predicate is an eval, which the portal's
    # Content-Security-Policy (script-src 'self') refuses
    until("the terminal re-fitted", lambda: screen.get_attribute("data-cols") != cols, within=10)
    narrower, rows = screen.get_attribute("data-cols"), screen.get_attribute("data-rows")
    assert int(narrower) < int(cols)
    type_line(me, "stty size")
    on_screen(me, rf"^{rows} {narrower}\s*$")
    me.snap("terminal-narrow")
    page.set_viewport_size({"width": 1200, "height": 900})
    type_line(me, "export MARK=kept-$((6*7))")
    # A reload reattaches to the same shell: its screen is replayed, its variables are set.
    page.reload()
    terminal_open(me)
    on_screen(me, r"^hi-\d+\s*$")
    screen.click()
    type_line(me, "echo again-$MARK")
    on_screen(me, r"^again-kept-42\s*$")
    # terminal-gateway restarts under it: the socket drops, the page reattaches by itself.
    restart_in_the_background("terminal-gateway")
    page.locator("#term-status", has_text="Reattached").wait_for(timeout=60_000)
    terminal_open(me)
    screen.click()
    type_line(me, "echo dropped-$MARK")
    on_screen(me, r"^dropped-kept-42\s*$")
    me.snap("terminal-reattached")
    type_line(me, "exit 3")
    page.locator("#term-screen[data-state=ended]").wait_for(timeout=20_000)
    assert "code 3" in page.locator("#term-status").text_content()
    # Every connect went to the same WebSocket path, the token only in its subprotocols.
    assert sockets and all(u.endswith("/connect") and "?" not in u for u in sockets), sockets
    assert len(sockets) >= 3  # open, after the reload, after the drop
    assert token not in page.content()
    from devstack.paths import logs_dir

    logged = [p.name for p in logs_dir().glob("*.log") if token in p.read_text(errors="replace")]
    assert not logged, f"the connect token is in {logged}"
    return page.url.split("?")[0]


class TestJourney:
    def test_sign_in_enroll_top_up_launch_release_statement(self, me: Visit, owner):
        _, person = owner
        page = me.page
        started = time.monotonic()

        # Sign in with the password; a new tenant starts with nothing: a low-balance warning.
        sign_in(me, person)
        assert page.locator("h1").text_content() == "Dashboard"
        assert page.locator("#low-balance").is_visible()
        me.snap("dashboard-empty")

        # Enroll TOTP: the QR code, the key, a code, the recovery codes once.
        me.go("/account", "account")
        assert page.locator("#totp-state").text_content() == "none"
        me.submit()
        assert page.locator(".qr svg").count() == 1
        me.snap("enroll")
        person.totp = pyotp.TOTP(page.locator("#totp-secret").text_content().strip())
        person.last_step = int(time.time()) // 30
        page.fill("#f-code", person.totp.generate_otp(person.last_step))
        me.submit()
        codes = page.locator("#recovery-codes li").all_text_contents()
        assert len(codes) == 10
        person.recovery_codes = [c.strip() for c in codes]
        me.snap("recovery-codes")
        me.go("/account", "account-active")
        assert page.locator("#totp-state").text_content() == "active"

        # Top up 20.00 through the sandbox provider; the payment page follows it to settled.
        def pay() -> bool:
            me.go("/billing", "billing")
            page.fill("#f-amount", "20.00")
            me.submit()
            return "/billing/payments/" in page.url  # billing may not know the tenant yet

        until("payment accepted", pay, within=20, every=0.5)
        page.locator("#payment-status[data-status=settled]").wait_for(timeout=15_000)
        me.snap("payment-settled")
        # Refund part of it: the sandbox refunds what it settled.
        page.fill("#f-amount", "1.00")
        me.submit("main form button")
        assert "succeeded" in page.locator(".notice").text_content()
        me.snap("refunded")
        me.go("/billing", "billing-paid")
        assert page.locator("#available").text_content() == "$19.00"

        # Launch a MIG slice: the price shows before confirming.
        def launch() -> bool:
            me.go("/launch", "launch")
            page.get_by_label(re.compile(r"H100 80GB, MIG 1g\.10gb \(")).check()
            page.locator("#quote", has_text="MIG 1g.10gb").wait_for()
            assert page.locator("#quote-price").text_content() == "$0.51/h"
            me.submit()
            # 402 while gpuaas has not seen the payment's balance yet: the form says so.
            return "/allocations/" in page.url

        until("launch accepted", launch, within=20, every=0.5)
        allocation_url = page.url
        # The live panel moves requested -> running without a reload.
        page.evaluate("window.__notReloaded = true")
        page.locator("#state[data-state=running]").wait_for(timeout=20_000)
        assert page.evaluate("window.__notReloaded") is True
        assert page.locator("#live svg rect.mine").count() == 2  # 1 memory + 1 compute slice
        me.snap("allocation-running")

        # The browser terminal on it (issue 13 through the portal).
        assert use_the_terminal(me) == allocation_url

        me.go("/", "dashboard-running")
        assert page.locator("table", has_text="1g.10gb").is_visible()
        assert page.locator("#burn").text_content() == "$0.51/h"

        # Release; the panel follows it to released. The "Open terminal" form as drawn while
        # it ran (kept aside here, as a page left open in another tab would have it) is
        # refused then: terminal-gateway's 409 at the terminal.
        me.go(allocation_url, "allocation")
        stale = page.locator("#open-terminal").evaluate(
            "f => ({action: f.action, fields: [...new FormData(f)]})"
        )
        me.submit("#live form button.danger")
        page.locator("#state[data-state=released]").wait_for(timeout=20_000)
        me.snap("allocation-released")
        page.locator("#terminal").evaluate(STALE_FORM, stale)
        me.submit("#stale-open-terminal button")
        assert page.locator("#terminal .problem", has_text="not running").is_visible()
        me.snap("terminal-refused")

        # The charge (its closing usage interval, rated by billing) appears on the billing page.
        def charged() -> bool:
            me.page.goto("/billing")
            return page.locator("#usage-table", has_text=MIG[2]).count() == 1

        until("the charge on the billing page", charged, within=30, every=0.5)
        me.snap("billing-charged")
        assert page.locator("#movements", has_text="top_up").is_visible()
        assert page.locator("#movements", has_text="refund").is_visible()

        # The statement of this month has the usage line; the CSV carries it too.
        month = dt.datetime.now(dt.UTC).strftime("%Y-%m")
        me.go(f"/billing/statements/{month}", "statement")
        line = page.locator("#statement-lines tr", has_text=MIG[2])
        assert line.count() == 1 and "usage" in line.text_content()
        csv = me.context.request.get(f"/billing/statements/{month}.csv")
        assert csv.status == 200 and MIG[2] in csv.text()
        assert csv.headers["content-type"].startswith("text/csv")
        print(f"portal journey: {time.monotonic() - started:.1f}s")


class TestStepUp:
    def test_a_step_up_prompt_then_the_action_and_its_key_shown_once(self, me: Visit, owner):
        body, person = owner
        page = me.page
        project = body["project"]["id"]
        # The session signed in with the password only: creating a service account asks
        # for a recent second factor (RFC 9470); the portal prompts, then runs the action.
        me.go(f"/projects/{project}", "project")
        form = page.locator("form[aria-label='New service account']")
        form.locator("#f-name").fill("ci-bot")
        with page.expect_navigation():
            form.locator("button").click()
        assert page.locator("h1").text_content() == "Confirm it is you"
        me.snap("step-up")
        page.fill("#f-password", person.password)
        page.fill("#f-otp", person.next_code())
        me.submit()
        assert page.locator("h1").text_content() == "Service account ci-bot"
        me.snap("service-account")
        # The fresh token now carries the second factor: the key is issued at once.
        me.submit("form[aria-label='Issue an API key'] button")
        secret = page.locator("#api-key-secret").text_content()
        assert secret.startswith("gck_")
        me.snap("api-key-issued")
        account_page = page.url.removesuffix("/keys")
        me.go(account_page, "service-account-again")
        assert page.locator("#api-key-secret").count() == 0 and secret not in page.content()
        assert page.locator("main table code").count() == 1  # the key's prefix only


class TestFormErrors:
    def test_api_problems_are_shown_at_the_fields_they_name(self, me: Visit):
        page = me.page
        me.go("/projects", "projects")
        page.fill("#f-name", "Research")
        page.fill("#f-slug", "Bad Slug!")
        me.submit()
        assert page.locator("#f-slug").get_attribute("aria-invalid") == "true"
        assert "Request validation failed" in page.locator("#e-slug").text_content()
        assert page.locator(".problem").is_visible()
        me.snap("project-slug-error")

        me.go("/launch", "launch-again")
        page.get_by_label(re.compile(r"H100 80GB, MIG 1g\.10gb \(")).check()
        page.fill("#f-count", "0")
        me.submit()
        assert page.locator("#f-count").get_attribute("aria-invalid") == "true"
        assert page.locator("#e-count").is_visible()
        me.snap("launch-count-error")
        me.go("/members", "members")
        assert page.locator("main table", has_text=me_email(me)).count() == 1


class TestAuditTrail:
    def test_the_owner_reads_filters_and_pages_the_tenants_trail(self, me: Visit, owner):
        _, person = owner
        page = me.page

        def opened_recorded() -> bool:
            # audit serves what its latest signed checkpoint covers (every few seconds)
            page.goto("/audit?action=terminal.session.opened")
            return page.locator("#audit-records tbody tr").count() >= 3

        until("the terminal's sessions in the audit trail", opened_recorded, within=30, every=1)
        me.snap("audit-terminal-opened")
        actions = page.locator("#audit-records tbody tr td:nth-child(4)").all_text_contents()
        assert {a.strip() for a in actions} == {"terminal.session.opened"}
        # The whole trail, oldest first: the tenant's creation among its first records.
        me.go("/audit", "audit")
        assert page.locator("header nav a[aria-current=page]").text_content() == "Audit"
        assert page.locator("#audit-records tr", has_text="iam.tenant.created").count() == 1
        # The filters form: an actor by the member's email, an action, a time range.
        page.fill("#f-actor", person.email)
        page.fill("#f-action", "gpuaas.allocation.requested")
        me.submit("main form button[type=submit]")
        rows = page.locator("#audit-records tbody tr")
        assert rows.count() == 1 and person.email in rows.first.text_content()
        me.snap("audit-filtered")
        later = (dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M")
        page.fill("#f-action", "")
        page.fill("#f-since", later)
        me.submit("main form button[type=submit]")
        assert page.locator("#audit-empty").is_visible()
        me.snap("audit-nothing-yet")
        me.go("/audit?since=not-a-time", "audit-bad-time", status=400)
        assert page.locator("#f-since").get_attribute("aria-invalid") == "true"
        # A page at a time: the tenant's own sequence goes on without a gap across pages.
        me.go("/audit?limit=10", "audit-page-1")
        seqs = page.locator("#audit-records tbody tr td:first-child").all_text_contents()
        assert [int(x) for x in seqs] == list(range(1, 11))
        me.submit("#audit-next")
        seqs = page.locator("#audit-records tbody tr td:first-child").all_text_contents()
        assert int(seqs[0]) == 11
        me.snap("audit-page-2")
        assert page.locator("nav[aria-label='Pages of records'] a", has_text="First").count()


class TestIsolationAndCsrf:
    def test_another_tenants_urls_are_404_pages(self, browser, fleet, report, me: Visit, owner):
        body, _ = owner
        project = body["project"]["id"]
        mine = me.page
        me.go(f"/allocations?project={project}", "allocations")
        allocation_href = mine.locator("main table a").first.get_attribute("href")
        with fleet.client() as gateway:
            _, stranger = sign_up(gateway, "stranger", "Stranger-" + uuid.uuid4().hex)
        other = visit(browser, fleet, report, "stranger")
        try:
            sign_in(other, stranger)
            for path in (
                allocation_href,
                f"/projects/{project}",
                f"/projects/{project}/allocations/{allocation_href.rsplit('/', 1)[1]}/live",
            ):
                other.go(path, "not-found", status=404)
                assert "Not found" in other.page.locator("main").text_content()
        finally:
            other.context.close()

    def test_a_lower_role_gets_403_pages_and_refusals(self, browser, fleet, report, owner):
        body, _ = owner
        tenant, project = body["tenant"]["id"], body["project"]["id"]
        viewer = Person("viewer", "Viewer-" + uuid.uuid4().hex)
        with fleet.client() as gateway:
            invite(
                gateway, f"/v1/iam/tenants/{tenant}", viewer, "viewer",
                fleet.operator | {"Idempotency-Key": str(uuid.uuid4())},
            )  # fmt: skip
        v = visit(browser, fleet, report, "viewer")
        try:
            sign_in(v, viewer)
            v.go("/billing", "billing-refused", status=403)
            v.go("/members", "members-refused", status=403)
            # The audit trail is for owners and admins: no link, and audit's 403 as a page.
            assert v.page.locator("header nav a", has_text="Audit").count() == 0
            v.go("/audit", "audit-refused", status=403)
            assert "owner, admin" in v.page.locator("main").text_content()
            v.go(f"/projects/{project}", "project-as-viewer")
            assert "cannot read this project's members" in v.page.locator("main").text_content()
            v.go("/launch", "launch-as-viewer")
            v.page.get_by_label(re.compile(r"H100 80GB, MIG 1g\.10gb \(")).check()
            v.submit()
            assert v.page.locator(".problem").is_visible()  # the API's 403, at the form
            assert "/allocations/" not in v.page.url
            v.snap("launch-refused")
        finally:
            v.context.close()

    def test_forms_without_the_session_token_are_refused(self, fleet, me: Visit, owner):
        body, _ = owner
        project = body["project"]["id"]
        request = me.context.request
        with fleet.client() as gateway:
            before = gateway.get(
                f"/v1/gpu/tenants/{body['tenant']['id']}/projects/{project}/allocations",
                headers=fleet.operator,
            ).json()["items"]
        form = {"option": "/".join(MIG[:2]), "count": "1", "project_id": project}
        for extra in ({}, {"_csrf": "not-this-sessions-token"}):
            refused = request.post("/launch", form=form | extra, max_redirects=0)
            assert refused.status == 403 and "form has expired" in refused.text()
        assert request.post("/sign-out", max_redirects=0).status == 403
        with fleet.client() as gateway:
            after = gateway.get(
                f"/v1/gpu/tenants/{body['tenant']['id']}/projects/{project}/allocations",
                headers=fleet.operator,
            ).json()["items"]
        assert len(after) == len(before)


class TestOperator:
    def test_the_operator_pages(self, browser, fleet, report, owner):
        body, _ = owner
        v = visit(browser, fleet, report, "operator")
        try:
            v.go("/operator/sign-in", "operator-sign-in")
            v.page.fill("#f-token", "wrong-" + uuid.uuid4().hex)
            v.submit()
            assert v.page.locator("#e-token").is_visible()
            v.snap("operator-refused")
            v.page.fill("#f-token", fleet.operator_token)
            v.submit()
            assert v.page.locator("#nodes tbody tr").count() >= 1
            v.snap("fleet")
            v.go("/operator/tenants", "tenants")
            v.go(f"/operator/tenants/{body['tenant']['id']}", "tenant")
            assert v.page.locator("main table", has_text="Default").count() == 1
            v.go("/operator/prices", "prices")
            assert v.page.locator("main table", has_text=MIG[2]).count() == 1
        finally:
            v.context.close()


class TestSignOut:
    def test_sign_out_spends_the_refresh_token_the_cookie_held(self, fleet, me: Visit):
        from devstack import credentials
        from portal.sessions import COOKIE, unseal
        from portal.settings import _key

        (cookie,) = [c for c in me.context.cookies() if c["name"] == COOKIE]
        key = _key(credentials.password("portal_session_key"))
        held = unseal(cookie["value"], (key,), 43_200, time.time())
        assert held is not None and held.refresh_token
        me.go("/", "before-sign-out")
        me.submit("header form button")
        assert me.page.url.endswith("/sign-in")
        me.snap("signed-out")
        me.page.goto("/billing")
        assert "/sign-in?next=/billing" in me.page.url
        # A copy of the old cookie cannot renew its session: iam sees the spent token again.
        with fleet.client() as gateway:
            reused = gateway.post(
                "/v1/iam/token",
                data={"grant_type": "refresh_token", "refresh_token": held.refresh_token},
            )
        assert reused.status_code == 400 and "invalid_grant" in reused.text

    def test_signing_in_again_asks_for_the_second_factor(self, me: Visit, owner):
        _, person = owner
        sign_in(me, person)
        assert me.page.locator("h1").text_content() == "Enter your authenticator code"
        me.snap("second-factor")
        me.page.fill("#f-otp", "000000")
        me.submit()
        assert me.page.locator("#f-otp").get_attribute("aria-invalid") == "true"
        me.snap("second-factor-refused")
        me.page.fill("#f-otp", person.recovery_codes.pop())  # a recovery code, spent once
        me.submit()
        assert me.page.locator("h1").text_content() == "Dashboard"
        me.go("/account", "account-with-otp")
        assert me.page.locator("main dl", has_text="password and code").count() == 1
