"""Load during the faults: tenants walking the launch journey through the gateway, the way
tests/e2e/test_launch_journey.py does, over and over until told to stop.

Every mutating call carries an Idempotency-Key chosen once per intent and kept across
retries: a connection error, a 5xx (the gateway answers 502/503 while an upstream restarts),
a 429 or a 401 (token refreshed first) is retried with the SAME key, so a retry never
launches, pays or signs up twice. Other answers are the caller's to judge.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import random
import time
import uuid
from typing import Any

import httpx
import pyotp
from websockets.asyncio.client import connect as ws_connect

from gpucloud_terminal import protocol

# 3.60 USD per H100-hour (1,000 micros a second); a 1g.10gb slice at one seventh of it.
GPU_PRICE = ("gpu:h100-80gb", 3_600_000)
MIG_PRICE = ("mig:h100-80gb:1g.10gb", 504_000)
RETRYABLE = {429, 500, 502, 503, 504}
FINAL = {"released", "rejected"}


class Gave(Exception):
    """A call did not get a usable answer within its deadline (the round moves on)."""


@dataclasses.dataclass
class LoadStats:
    signups: int = 0
    payments: int = 0
    payments_unsettled: int = 0
    launches: int = 0
    rejected: int = 0
    refused: int = 0  # 402: gpuaas had not seen the top-up yet
    releases: int = 0
    terminals: int = 0  # sessions that echoed a command through the whole chain
    terminals_exited: int = 0  # ... and then ended with `exit` (closed cleanly)
    billing_stops: int = 0
    retries: int = 0
    gave_up: int = 0
    step_ups: int = 0  # 401 insufficient_user_authentication: signed in again with a code
    errors: list[str] = dataclasses.field(default_factory=list)
    # Runs of 401 a tenant met with a token iam had just issued it: (first 401, the next
    # answer that judged the token otherwise, "METHOD /v1/<route>"), monotonic seconds. The
    # audit (audit.check_refusals) allows them only during a fault and 5 s after it.
    refusals: list[tuple[float, float, str]] = dataclasses.field(default_factory=list)


def _key() -> str:
    return str(uuid.uuid4())


class Tenant:
    """One tenant's owner, signed in with password + TOTP, as the portal holds it."""

    def __init__(
        self, index: int, gateway: str, operator_token: str, rng: random.Random, stats: LoadStats
    ) -> None:
        self.index, self.rng, self.stats = index, rng, stats
        self.client = httpx.AsyncClient(base_url=gateway, timeout=10.0)
        self.operator = {"Authorization": f"Bearer {operator_token}"}
        self.slug = f"chaos-{index}-{uuid.uuid4().hex[:8]}"
        self.email = f"owner@{self.slug}.example"
        self.password = uuid.uuid4().hex + "Aa1!"
        self.tenant_id = self.project_id = ""
        self.access = self.refresh = ""
        self.totp: pyotp.TOTP | None = None
        self.recovery: list[str] = []
        self.allocations: list[str] = []  # every allocation this tenant ever launched
        self._refused: tuple[float, str] | None = None  # an open run of 401s: since, where

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.access}"}

    async def close(self) -> None:
        await self.client.aclose()

    async def call(
        self,
        method: str,
        path: str,
        *,
        key: str | None = None,
        operator: bool = False,
        anonymous: bool = False,
        within: float = 90.0,
        **kwargs: Any,
    ) -> httpx.Response:
        """One request, retried with the same Idempotency-Key through faults."""
        deadline = time.monotonic() + within
        delay = 0.2
        while True:
            if operator:
                headers = dict(self.operator)
            elif anonymous or not self.access:
                headers = {}
            else:
                headers = dict(self.auth)
            if key is not None:
                headers["Idempotency-Key"] = key
            try:
                response = await self.client.request(method, path, headers=headers, **kwargs)
                last = f"HTTP {response.status_code}"
            except httpx.HTTPError as exc:
                response, last = None, type(exc).__name__
            if (
                response is not None
                and response.status_code == 401
                and self.access
                and not (operator or anonymous)
            ):
                if "insufficient_user_authentication" in response.headers.get(
                    "www-authenticate", ""
                ):
                    await self.step_up()  # a second factor too old for this route
                else:
                    if self._refused is None:
                        self._refused = (
                            time.monotonic(),
                            f"{method} /{'/'.join(path.split('/')[1:3])}",
                        )
                    await self.sign_in_again()
                response = None
            elif (
                self._refused is not None
                and response is not None
                and (response.status_code not in RETRYABLE)
            ):
                self.stats.refusals.append((self._refused[0], time.monotonic(), self._refused[1]))
                self._refused = None
            if response is not None and response.status_code not in RETRYABLE:
                return response
            if time.monotonic() > deadline:
                self.stats.gave_up += 1
                raise Gave(f"{method} {path.split('/')[2]}: no answer in {within:g} s ({last})")
            self.stats.retries += 1
            await asyncio.sleep(delay)
            delay = min(delay * 1.5, 2.0)

    # --- identity -------------------------------------------------------------------------

    async def sign_up(self) -> None:
        r = await self.call(
            "POST",
            "/v1/iam/signup",
            key=_key(),
            json={
                "tenant_name": f"Chaos {self.index}",
                "slug": self.slug,
                "email": self.email,
                "password": self.password,
            },
        )
        if r.status_code != 202:
            raise Gave(f"signup: {r.status_code} {r.text[:200]}")
        # The link iam mailed to the address (devstack's mail sink), opened as a person does.
        from devstack import mail

        try:
            token = await asyncio.to_thread(mail.wait_for_token, self.email, "gcv_", within=60.0)
        except TimeoutError as exc:
            raise Gave(f"signup: {exc}") from None
        r = await self.call("POST", "/v1/iam/verify", json={"token": token})
        if r.status_code != 201:
            raise Gave(f"verify: {r.status_code} {r.text[:200]}")
        self.tenant_id = r.json()["tenant"]["id"]
        self.project_id = r.json()["project"]["id"]
        self.stats.signups += 1
        await self._token({"username": self.email, "password": self.password})
        # Enroll TOTP and activate it; then the password alone no longer signs in.
        for _ in range(5):
            enrolled = await self.call("POST", "/v1/iam/me/mfa/totp")
            if enrolled.status_code not in (200, 201):
                raise Gave(f"totp enroll: {enrolled.status_code} {enrolled.text[:200]}")
            totp = pyotp.TOTP(enrolled.json()["secret"])
            verified = await self.call(
                "POST", "/v1/iam/me/mfa/totp/verify", json={"code": totp.now()}
            )
            if verified.status_code in (200, 201):
                self.totp, self.recovery = totp, list(verified.json()["recovery_codes"])
                break
        else:
            raise Gave("totp activation kept failing")
        # The code used for activation may not be replayed: the next step's code is accepted.
        await self._token(
            {
                "username": self.email,
                "password": self.password,
                "otp": self.totp.at(time.time() + 30),
            }
        )

    async def _token(self, form: dict[str, str]) -> None:
        form = {"grant_type": "password", "tenant": self.slug, **form}
        r = await self.call("POST", "/v1/iam/token", anonymous=True, data=form)
        if r.status_code != 200:
            raise Gave(f"sign-in: {r.status_code} {r.text[:200]}")
        self.access, self.refresh = r.json()["access_token"], r.json().get("refresh_token", "")

    def close_refusal(self, at: float) -> None:
        """The run ended with the load (still refused when it stopped)."""
        if self._refused is not None:
            self.stats.refusals.append((self._refused[0], at, self._refused[1]))
            self._refused = None

    async def step_up(self) -> None:
        """Sign in again with the password and a fresh TOTP code (the route wants a recent
        second factor: the terminal's session, say, ten minutes after the last sign-in)."""
        if self.totp is None:
            return
        self.stats.step_ups += 1
        for at in (time.time(), time.time() + 30):
            form = {"username": self.email, "password": self.password, "otp": self.totp.at(at)}
            try:
                r = await self.client.post(
                    "/v1/iam/token", data={"grant_type": "password", "tenant": self.slug, **form}
                )
            except httpx.HTTPError:
                return
            if r.status_code == 200:
                self.access, self.refresh = r.json()["access_token"], r.json()["refresh_token"]
                return

    async def sign_in_again(self) -> None:
        """The access token expired (5 min) or was refused: refresh it; if the refresh token
        was lost to a fault (a used one revokes its family), sign in with a recovery code."""
        if self.refresh:
            try:
                r = await self.client.post(
                    "/v1/iam/token",
                    data={"grant_type": "refresh_token", "refresh_token": self.refresh},
                )
                if r.status_code == 200:
                    self.access, self.refresh = r.json()["access_token"], r.json()["refresh_token"]
                    return
            except httpx.HTTPError:
                return  # iam is down: the caller retries, and so do we then
        if self.recovery:
            self.refresh = ""
            code = self.recovery.pop()
            form = {"username": self.email, "password": self.password, "otp": code}
            with_code = {"grant_type": "password", "tenant": self.slug, **form}
            try:
                r = await self.client.post("/v1/iam/token", data=with_code)
            except httpx.HTTPError:
                return
            if r.status_code == 200:
                self.access, self.refresh = r.json()["access_token"], r.json()["refresh_token"]

    # --- billing ---------------------------------------------------------------------------

    async def set_prices(self) -> None:
        since = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1)
        for price_key, per_hour in (GPU_PRICE, MIG_PRICE):
            r = await self.call(
                "POST",
                "/v1/billing/prices",
                key=_key(),
                operator=True,
                json={
                    "price_key": price_key,
                    "micros_per_gpu_hour": per_hour,
                    "effective_from": since.isoformat(),
                    "tenant_id": self.tenant_id,
                },
            )
            if r.status_code != 201:
                raise Gave(f"price: {r.status_code} {r.text[:200]}")

    async def top_up(self, amount: int) -> bool:
        """Pay through the sandbox; True once settled. A billing killed before its sandbox
        sent the webhook leaves the payment pending (the provider's in-memory books die with
        it; reconciliation reports it): then the round goes on without it."""
        key = _key()
        path = f"/v1/billing/tenants/{self.tenant_id}/payments"
        deadline = time.monotonic() + 60
        while True:  # 404/409 until billing has projected the tenant from iam's event
            r = await self.call("POST", path, key=key, json={"amount_micros": amount})
            if r.status_code in (200, 201):
                break
            if time.monotonic() > deadline:
                raise Gave(f"payment: {r.status_code} {r.text[:200]}")
            await asyncio.sleep(0.5)
        self.stats.payments += 1
        payment = f"{path}/{r.json()['id']}"
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            got = await self.call("GET", payment)
            if got.status_code == 200 and got.json()["status"] == "settled":
                return True
            await asyncio.sleep(0.5)
        self.stats.payments_unsettled += 1
        return False

    # --- gpuaas ----------------------------------------------------------------------------

    @property
    def _allocations(self) -> str:
        return f"/v1/gpu/tenants/{self.tenant_id}/projects/{self.project_id}/allocations"

    async def launch(self, body: dict[str, Any], within: float = 45.0) -> str | None:
        """Launch with one Idempotency-Key however many tries; None if refused throughout
        (403/404 until gpuaas sees the membership or has projected the project from iam's
        event). A 402 (gpuaas has not seen the payment yet) or a 409 price-unknown is an
        answer: gpuaas recorded a rejected allocation under that key, so the next try is a new
        intent with a new key."""
        key = _key()
        deadline = time.monotonic() + within
        while True:
            r = await self.call("POST", self._allocations, key=key, json=body)
            if r.status_code == 201:
                allocation_id = r.json()["id"]
                self.allocations.append(allocation_id)
                self.stats.launches += 1
                if r.json()["state"] == "rejected":
                    self.stats.rejected += 1
                    return None
                return allocation_id
            # 402 (gpuaas has not seen the payment, or no balance at all, yet) and 409
            # price-unknown (nor the price book) are recorded rejections: a new key.
            if r.status_code == 402 or (r.status_code == 409 and "price-unknown" in r.text):
                self.stats.refused += 1
                key = _key()
            if r.status_code not in (402, 403, 404, 409) or time.monotonic() > deadline:
                self.stats.errors.append(f"launch {body}: {r.status_code} {r.text[:200]}")
                return None
            await asyncio.sleep(1.0 if r.status_code == 402 else 0.5)

    async def state(self, allocation_id: str) -> dict[str, Any] | None:
        r = await self.call("GET", f"{self._allocations}/{allocation_id}")
        return r.json() if r.status_code == 200 else None

    async def wait_state(self, allocation_id: str, states: set[str], within: float) -> dict | None:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            body = await self.state(allocation_id)
            if body is not None and body["state"] in states:
                return body
            await asyncio.sleep(0.5)
        return None

    async def terminal(self, allocation_id: str) -> None:
        """Open a terminal on the allocation through the gateway, run one command, then
        either exit (a clean close: its recording must be complete) or just drop the socket
        (detached: the allocation's release revokes it). Faults may cut it anywhere; only
        the audit judges the outcome."""
        r = await self.call(
            "POST", "/v1/terminal/sessions", key=_key(), json={"allocation_id": allocation_id},
            within=20,
        )  # fmt: skip
        if r.status_code != 201:
            return  # not projected yet, or the allocation stopped: not an error of the load
        body = r.json()
        marker = uuid.uuid4().hex[:8]
        exit_cleanly = self.rng.random() < 0.6
        try:
            async with asyncio.timeout(15):
                async with ws_connect(
                    body["connect_url"],
                    subprotocols=[protocol.SUBPROTOCOL, protocol.bearer_subprotocol(body["token"])],
                    open_timeout=5,
                ) as ws:  # fmt: skip
                    await ws.send(f"echo chaos-{marker[:4]}''{marker[4:]}\n".encode())
                    seen = b""
                    while f"chaos-{marker}".encode() not in seen:
                        frame = await ws.recv()
                        if isinstance(frame, bytes):
                            seen = (seen + frame)[-4096:]
                    self.stats.terminals += 1
                    if exit_cleanly:
                        await ws.send(b"exit\n")
                        async for frame in ws:
                            if isinstance(frame, str) and protocol.decode(frame).type == "exit":
                                self.stats.terminals_exited += 1
        except Exception as exc:  # a fault cut it: the session detaches or ends
            self.stats.errors.append(f"terminal: {type(exc).__name__}")

    async def release(self, allocation_id: str) -> None:
        r = await self.call("POST", f"{self._allocations}/{allocation_id}/release", key=_key())
        if r.status_code == 202:
            self.stats.releases += 1
        elif r.status_code != 409:  # 409: already final
            self.stats.errors.append(f"release: {r.status_code} {r.text[:200]}")

    # --- the journey -----------------------------------------------------------------------

    async def setup(self) -> None:
        await self.sign_up()
        await self.set_prices()

    async def round(self) -> None:
        """Top up, launch a MIG slice and a whole GPU, release one after a while, let the
        other run the balance down until billing's stop releases it."""
        # 8 to 20 s of a whole GPU, plus what the last round overdrew (usage rated after
        # billing's stop took the balance below zero): otherwise gpuaas rightly refuses.
        amount = self.rng.randrange(8_000, 20_000, 1000)
        balance = await self.call("GET", f"/v1/billing/tenants/{self.tenant_id}/balance")
        if balance.status_code == 200:
            amount += max(0, -int(balance.json()["available_micros"]))
        if not await self.top_up(amount):
            return
        launched = [
            await self.launch({"sku": "h100-80gb", "mig_profile": "1g.10gb"}),
            await self.launch({"sku": "h100-80gb", "count": 1}),
        ]
        live = [a for a in launched if a]
        for allocation_id in live:
            await self.wait_state(allocation_id, {"running", *FINAL}, within=30)
        if live:
            await self.terminal(live[0])
        await asyncio.sleep(self.rng.uniform(1.0, 4.0))
        if len(live) == 2:
            await self.release(live.pop(self.rng.randrange(2)))
        for allocation_id in live:
            body = await self.wait_state(allocation_id, {"releasing", *FINAL}, within=60)
            if body is not None and body.get("reason") == "balance_exhausted":
                self.stats.billing_stops += 1
            elif body is None:
                await self.release(allocation_id)

    async def release_all(self) -> None:
        """At the end of the run: release whatever still holds capacity."""
        for allocation_id in self.allocations:
            body = await self.state(allocation_id)
            if body is not None and body["state"] not in {*FINAL, "releasing"}:
                await self.release(allocation_id)


async def run_tenant(tenant: Tenant, stop: asyncio.Event) -> None:
    try:
        for attempt in range(3):
            try:
                await tenant.setup()
                break
            except Gave as exc:
                tenant.stats.errors.append(f"tenant {tenant.index} setup {attempt}: {exc}")
                if attempt == 2:
                    return
        while not stop.is_set():
            try:
                await tenant.round()
            except Gave as exc:
                tenant.stats.errors.append(f"tenant {tenant.index}: {exc}")
    except Exception as exc:  # a load bug must not hide the audit's verdict
        tenant.stats.errors.append(f"tenant {tenant.index} crashed: {type(exc).__name__}: {exc}")
